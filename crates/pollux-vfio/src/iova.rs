//! [`IovaAllocator`]: hands out I/O virtual address ranges of one container.
//!
//! Pure bookkeeping, no I/O, so it is tested exhaustively. First fit over a
//! sorted free list, with neighbours merged on free; a data plane allocates
//! a handful of large ranges (mempools, descriptor rings), so simplicity beats
//! speed here.

use std::collections::BTreeMap;

/// Where the allocator starts by default: 4 GiB. Below it on x86 sit the
/// interrupt window (0xfee0_0000) that type1 reserves, and addresses some
/// devices cannot reach with 32-bit descriptors are not a concern for the
/// NICs here (all take 64-bit addresses).
pub const DEFAULT_BASE: u64 = 1 << 32;

/// Where it ends by default: 2^39, the smallest address width Intel VT-d
/// implementations offer (3-level tables), so every IOMMU can map it.
pub const DEFAULT_END: u64 = 1 << 39;

/// First-fit IOVA allocator over `[base, end)`.
#[derive(Debug, Clone)]
pub struct IovaAllocator {
    /// Free ranges: start -> end (exclusive), disjoint and not adjacent.
    free: BTreeMap<u64, u64>,
    /// Allocated ranges: start -> len, to validate frees.
    used: BTreeMap<u64, u64>,
}

impl Default for IovaAllocator {
    fn default() -> Self {
        Self::new(DEFAULT_BASE, DEFAULT_END)
    }
}

impl IovaAllocator {
    /// An allocator for `[base, end)`.
    pub fn new(base: u64, end: u64) -> IovaAllocator {
        let mut free = BTreeMap::new();
        if end > base {
            free.insert(base, end);
        }
        IovaAllocator {
            free,
            used: BTreeMap::new(),
        }
    }

    /// Reserves `len` bytes aligned to `align` (a power of two). `None`
    /// when no free range fits.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        if len == 0 || !align.is_power_of_two() {
            return None;
        }
        let (start, end, at) = self.free.iter().find_map(|(&s, &e)| {
            let at = s.checked_add(align - 1)? & !(align - 1);
            (at.checked_add(len)? <= e).then_some((s, e, at))
        })?;
        self.free.remove(&start);
        if at > start {
            self.free.insert(start, at);
        }
        if at + len < end {
            self.free.insert(at + len, end);
        }
        self.used.insert(at, len);
        Some(at)
    }

    /// Returns a range from [`alloc`](Self::alloc). False (and nothing
    /// changes) when `start` is not the start of an allocated range.
    pub fn free(&mut self, start: u64) -> bool {
        let Some(len) = self.used.remove(&start) else {
            return false;
        };
        let mut s = start;
        let mut e = start + len;
        // Merge with the free range that ends where this one starts.
        if let Some((&ps, &pe)) = self.free.range(..s).next_back() {
            if pe == s {
                self.free.remove(&ps);
                s = ps;
            }
        }
        // And with the one that starts where this one ends.
        if let Some(ne) = self.free.remove(&e) {
            e = ne;
        }
        self.free.insert(s, e);
        true
    }

    /// Whether `[start, start + len)` lies inside one allocated range.
    pub fn contains(&self, start: u64, len: u64) -> bool {
        self.used
            .range(..=start)
            .next_back()
            .is_some_and(|(&s, &l)| start.checked_add(len).is_some_and(|e| e <= s + l))
    }

    /// Bytes currently allocated.
    pub fn allocated(&self) -> u64 {
        self.used.values().sum()
    }

    /// Number of free ranges (1 when nothing is allocated).
    pub fn fragments(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_first_fit_and_merge_back() {
        let mut a = IovaAllocator::new(0x1000, 0x10_0000);
        let x = a.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(x, 0x1000);
        // 64 KiB alignment skips ahead and leaves a hole.
        let y = a.alloc(0x2000, 0x1_0000).unwrap();
        assert_eq!(y, 0x1_0000);
        let z = a.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(z, 0x2000, "first fit uses the hole");
        assert_eq!(a.allocated(), 0x4000);
        assert!(a.free(y));
        assert!(!a.free(y), "double free is refused");
        assert!(a.free(x));
        assert!(a.free(z));
        assert_eq!(a.fragments(), 1);
        assert_eq!(a.allocated(), 0);
        assert_eq!(
            a.alloc(0xF_F000, 0x1000),
            Some(0x1000),
            "whole range is back"
        );
    }

    #[test]
    fn contains_only_inside_one_allocation() {
        let mut a = IovaAllocator::new(0x1000, 0x10000);
        let x = a.alloc(0x2000, 0x1000).unwrap();
        assert!(a.contains(x, 0x2000) && a.contains(x + 0x100, 0x100));
        assert!(!a.contains(x, 0x2001) && !a.contains(x - 1, 2));
        assert!(!a.contains(0xf000, 1) && !a.contains(u64::MAX, 2));
    }

    #[test]
    fn exhaustion_and_bad_requests() {
        let mut a = IovaAllocator::new(0, 0x4000);
        assert_eq!(a.alloc(0, 0x1000), None);
        assert_eq!(a.alloc(0x1000, 3), None);
        assert!(a.alloc(0x4000, 0x1000).is_some());
        assert_eq!(a.alloc(0x1000, 0x1000), None);
        assert!(!a.free(0x1234));
    }

    #[test]
    fn random_alloc_free_never_overlaps() {
        // A small deterministic LCG instead of a proptest dependency.
        let mut seed = 0x1234_5678_u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut a = IovaAllocator::new(0x1000, 0x100_0000);
        let mut live: Vec<(u64, u64)> = Vec::new();
        for _ in 0..2000 {
            if rnd() % 3 != 0 || live.is_empty() {
                let len = (rnd() % 64 + 1) * 0x1000;
                let align = 0x1000 << (rnd() % 5);
                if let Some(at) = a.alloc(len, align) {
                    assert_eq!(at % align, 0);
                    for &(s, l) in &live {
                        assert!(at + len <= s || s + l <= at, "overlap");
                    }
                    live.push((at, len));
                }
            } else {
                let i = (rnd() as usize) % live.len();
                let (s, _) = live.swap_remove(i);
                assert!(a.free(s));
            }
            assert_eq!(a.allocated(), live.iter().map(|x| x.1).sum::<u64>());
        }
        for (s, _) in live {
            assert!(a.free(s));
        }
        assert_eq!(a.fragments(), 1);
    }
}
