//! The client's DMA maps: IOVA ranges the guest (through QEMU's vIOMMU) gave
//! the device, each backed by a file (the guest-RAM memfd) at an offset.
//!
//! QEMU sends one `DMA_MAP` per 4 KiB page once the guest enables DMA
//! remapping (LAB.md), so a driver's ring of a few MiB is thousands of maps.
//! Each distinct backing file is mapped into this process once, whole, and
//! a map is a (start, length, backing, offset) entry in a `BTreeMap` keyed
//! by IOVA: a lookup is one `range(..=iova).next_back()`, O(log n), and a
//! DMA that crosses from one page's map into the next is split per map.
//!
//! Guest memory is shared with a running guest: it is only ever touched
//! through raw pointers with `ptr::copy_nonoverlapping`, never through a
//! Rust reference, since the guest may change it at any moment.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use memmap2::MmapRaw;

/// What a DMA or a map request got wrong. Each is also a violation the
/// model logs: a device on hardware would raise a DMA fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IovaError {
    /// No map covers this IOVA.
    #[error("IOVA {iova:#x} is not mapped")]
    Unmapped {
        /// First unmapped address of the access.
        iova: u64,
    },
    /// The map covering this IOVA does not allow the access.
    #[error("IOVA {iova:#x} is mapped without {what} permission")]
    Permission {
        /// The address.
        iova: u64,
        /// "read" or "write".
        what: &'static str,
    },
    /// A new map overlaps an existing one.
    #[error("map [{iova:#x}, +{len:#x}) overlaps the map at {existing:#x}")]
    Overlap {
        /// Start of the new map.
        iova: u64,
        /// Its length.
        len: u64,
        /// Start of the map it overlaps.
        existing: u64,
    },
    /// A map with no length, wrapping the address space, or beyond its file.
    #[error("bad map [{iova:#x}, +{len:#x}) at file offset {offset:#x}: {why}")]
    BadMap {
        /// Start.
        iova: u64,
        /// Length.
        len: u64,
        /// Offset into the backing file.
        offset: u64,
        /// Why.
        why: String,
    },
    /// An access whose end wraps the 64-bit address space.
    #[error("access at {iova:#x} of {len} bytes wraps the address space")]
    Wraps {
        /// Start.
        iova: u64,
        /// Length.
        len: usize,
    },
}

/// A backing file mapped whole into this process.
#[derive(Debug)]
struct Backing {
    key: (u64, u64),
    map: MmapRaw,
}

#[derive(Debug, Clone)]
struct Map {
    len: u64,
    offset: u64,
    read: bool,
    write: bool,
    backing: Arc<Backing>,
}

/// The set of DMA maps of one client.
#[derive(Debug, Default)]
pub struct IovaMap {
    maps: BTreeMap<u64, Map>,
    backings: Vec<Arc<Backing>>,
}

impl IovaMap {
    /// An empty map set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of maps.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// No maps.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// Adds the map `[iova, iova + len)` backed by `file` at `offset`.
    /// Refuses overlaps, empty or wrapping ranges and ranges beyond the
    /// file's end.
    pub fn map(
        &mut self,
        iova: u64,
        len: u64,
        file: &File,
        offset: u64,
        read: bool,
        write: bool,
    ) -> Result<(), IovaError> {
        let bad = |why: &str| IovaError::BadMap {
            iova,
            len,
            offset,
            why: why.to_owned(),
        };
        let end = iova.checked_add(len).filter(|_| len > 0);
        let Some(end) = end else {
            return Err(bad("empty or wrapping range"));
        };
        if let Some(existing) = self.overlapping(iova, end) {
            return Err(IovaError::Overlap {
                iova,
                len,
                existing,
            });
        }
        let backing = self.backing(file).map_err(|e| bad(&e))?;
        let fits = offset
            .checked_add(len)
            .is_some_and(|e| e <= backing.map.len() as u64);
        if !fits {
            return Err(bad(&format!(
                "beyond the backing file's {} bytes",
                backing.map.len()
            )));
        }
        self.maps.insert(
            iova,
            Map {
                len,
                offset,
                read,
                write,
                backing,
            },
        );
        Ok(())
    }

    /// Removes every map inside `[iova, iova + len)`; returns how many. A
    /// map only partly inside is refused (the vfio-user client unmaps what
    /// it mapped).
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<usize, IovaError> {
        let end = iova.checked_add(len).ok_or(IovaError::BadMap {
            iova,
            len,
            offset: 0,
            why: "wrapping range".into(),
        })?;
        let inside: Vec<u64> = self
            .maps
            .range(..end)
            .rev()
            .take_while(|(&s, m)| s + m.len > iova)
            .map(|(&s, _)| s)
            .collect();
        for &s in &inside {
            let m = &self.maps[&s];
            if s < iova || s + m.len > end {
                return Err(IovaError::BadMap {
                    iova,
                    len,
                    offset: 0,
                    why: format!("cuts the map at {s:#x} (+{:#x})", m.len),
                });
            }
        }
        for s in &inside {
            self.maps.remove(s);
        }
        self.backings.retain(|b| Arc::strong_count(b) > 1);
        Ok(inside.len())
    }

    /// Removes every map.
    pub fn unmap_all(&mut self) {
        self.maps.clear();
        self.backings.clear();
    }

    /// Copies `buf.len()` bytes from guest memory at `iova` (device reads,
    /// a DMA to the device).
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), IovaError> {
        self.walk(iova, buf.len(), false, |ptr, at, n| {
            // SAFETY: `walk` hands out a pointer into a live mapping with at
            // least `n` bytes behind it; `buf[at..at + n]` is in bounds. The
            // guest may write the source concurrently: a raw copy, no
            // reference to guest memory is formed.
            unsafe { std::ptr::copy_nonoverlapping(ptr, buf.as_mut_ptr().add(at), n) }
        })
    }

    /// Copies `data` into guest memory at `iova` (device writes, a DMA from
    /// the device).
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<(), IovaError> {
        self.walk(iova, data.len(), true, |ptr, at, n| {
            // SAFETY: as in `read`, with the mapping writable (MAP_SHARED,
            // opened read-write) and the source our own slice.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr().add(at), ptr, n) }
        })
    }

    /// Checks the whole access first (nothing is copied when any part is
    /// unmapped or forbidden), then calls `f(pointer, offset in the access,
    /// bytes)` once per map it spans.
    fn walk(
        &self,
        iova: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), IovaError> {
        if iova.checked_add(len as u64).is_none() {
            return Err(IovaError::Wraps { iova, len });
        }
        let mut pieces: Vec<(*mut u8, usize, usize)> = Vec::new();
        let mut done = 0usize;
        while done < len {
            let at = iova + done as u64;
            let (start, m) = self
                .maps
                .range(..=at)
                .next_back()
                .filter(|(&s, m)| at < s + m.len)
                .ok_or(IovaError::Unmapped { iova: at })?;
            if (write && !m.write) || (!write && !m.read) {
                return Err(IovaError::Permission {
                    iova: at,
                    what: if write { "write" } else { "read" },
                });
            }
            let into = at - start;
            let n = ((m.len - into) as usize).min(len - done);
            let off = (m.offset + into) as usize;
            // SAFETY: `map` checked offset + len against the mapping's size
            // when the map was added, and `into + n <= m.len`.
            let ptr = unsafe { m.backing.map.as_mut_ptr().add(off) };
            pieces.push((ptr, done, n));
            done += n;
        }
        for (ptr, at, n) in pieces {
            f(ptr, at, n);
        }
        Ok(())
    }

    /// Start of a map overlapping `[start, end)`, if any.
    fn overlapping(&self, start: u64, end: u64) -> Option<u64> {
        self.maps
            .range(..end)
            .next_back()
            .filter(|(&s, m)| s + m.len > start)
            .map(|(&s, _)| s)
    }

    /// The backing for `file`, mapping it the first time it is seen (keyed
    /// by device and inode: QEMU sends the same memfd again with each map).
    fn backing(&mut self, file: &File) -> Result<Arc<Backing>, String> {
        let meta = file.metadata().map_err(|e| format!("fstat: {e}"))?;
        let key = (meta.dev(), meta.ino());
        if let Some(b) = self.backings.iter().find(|b| b.key == key) {
            return Ok(b.clone());
        }
        if meta.len() == 0 {
            return Err("the backing file is empty".into());
        }
        let map = memmap2::MmapOptions::new()
            .map_raw(file)
            .map_err(|e| format!("mmap of the backing file: {e}"))?;
        let b = Arc::new(Backing { key, map });
        self.backings.push(b.clone());
        Ok(b)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Guest memory for a test: an unlinked temporary file.
    pub(crate) fn ram(len: u64) -> File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(len).unwrap();
        f
    }

    #[test]
    fn pages_mapped_one_by_one_carry_a_dma_across_their_boundary() {
        let f = ram(1 << 20);
        let mut m = IovaMap::new();
        // IOVA pages in one order, file pages in another: a DMA across the
        // boundary lands in two places of the file.
        m.map(0x10_0000, 4096, &f, 0x3000, true, true).unwrap();
        m.map(0x10_1000, 4096, &f, 0x8000, true, true).unwrap();
        let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        m.write(0x10_0fa0, &data).unwrap();
        let mut back = vec![0u8; 200];
        m.read(0x10_0fa0, &mut back).unwrap();
        assert_eq!(back, data);
        // What the file holds: 0x60 bytes at the end of page 0x3000, the
        // rest at the start of page 0x8000.
        use std::os::unix::fs::FileExt;
        let mut a = vec![0u8; 0x60];
        f.read_exact_at(&mut a, 0x3fa0).unwrap();
        assert_eq!(a, data[..0x60]);
        let mut b = vec![0u8; 200 - 0x60];
        f.read_exact_at(&mut b, 0x8000).unwrap();
        assert_eq!(b, data[0x60..]);
        assert_eq!(m.backings.len(), 1, "one mmap for the same file");
    }

    #[test]
    fn unmapped_and_forbidden_accesses_are_refused_whole() {
        let f = ram(1 << 16);
        let mut m = IovaMap::new();
        m.map(0x1000, 0x1000, &f, 0, true, true).unwrap();
        m.map(0x3000, 0x1000, &f, 0x1000, true, false).unwrap();
        // Runs off the first map into a hole: refused, and nothing written.
        let e = m.write(0x1ff0, &[0xaa; 32]).unwrap_err();
        assert_eq!(e, IovaError::Unmapped { iova: 0x2000 });
        let mut b = [0u8; 16];
        m.read(0x1ff0, &mut b).unwrap();
        assert_eq!(b, [0; 16], "a refused DMA wrote nothing");
        assert!(matches!(
            m.write(0x3000, &[1]),
            Err(IovaError::Permission { what: "write", .. })
        ));
        m.read(0x3000, &mut b).unwrap();
        assert_eq!(
            m.read(u64::MAX - 3, &mut b),
            Err(IovaError::Wraps {
                iova: u64::MAX - 3,
                len: 16
            })
        );
        assert_eq!(m.read(0, &mut []), Ok(()), "an empty access is fine");
    }

    #[test]
    fn overlaps_bad_maps_and_partial_unmaps_are_refused() {
        let f = ram(1 << 16);
        let mut m = IovaMap::new();
        m.map(0x2000, 0x2000, &f, 0, true, true).unwrap();
        for (iova, len) in [(0x1000, 0x1001), (0x3fff, 1), (0x2800, 0x100), (0, 0x10000)] {
            assert!(
                matches!(
                    m.map(iova, len, &f, 0, true, true),
                    Err(IovaError::Overlap {
                        existing: 0x2000,
                        ..
                    })
                ),
                "{iova:#x}+{len:#x}"
            );
        }
        m.map(0x1000, 0x1000, &f, 0, true, true).unwrap();
        m.map(0x4000, 0x1000, &f, 0, true, true).unwrap();
        assert!(matches!(
            m.map(0x9000, 0, &f, 0, true, true),
            Err(IovaError::BadMap { .. })
        ));
        assert!(matches!(
            m.map(0x9000, 0x1000, &f, 0x10000, true, true),
            Err(IovaError::BadMap { .. })
        ));
        assert!(matches!(
            m.map(u64::MAX, 2, &f, 0, true, true),
            Err(IovaError::BadMap { .. })
        ));
        assert!(matches!(
            m.unmap(0x2000, 0x1000),
            Err(IovaError::BadMap { .. })
        ));
        assert_eq!(m.len(), 3);
        assert_eq!(m.unmap(0x1000, 0x3000).unwrap(), 2);
        assert_eq!(m.len(), 1);
        assert_eq!(m.unmap(0x4000, 0x1000).unwrap(), 1);
        assert!(m.is_empty());
        assert!(m.backings.is_empty(), "the last unmap drops the mmap");
    }

    #[test]
    fn thousands_of_page_maps_stay_a_log_n_lookup() {
        let f = ram(64 << 20);
        let mut m = IovaMap::new();
        // 16384 pages, IOVA order reversed against the file order.
        let pages = 16384u64;
        for p in 0..pages {
            m.map(
                0x4000_0000 + p * 4096,
                4096,
                &f,
                (pages - 1 - p) * 4096,
                true,
                true,
            )
            .unwrap();
        }
        let t = std::time::Instant::now();
        let mut b = [0u8; 64];
        for p in 0..pages {
            m.write(0x4000_0000 + p * 4096 + 8, &p.to_le_bytes())
                .unwrap();
            m.read(0x4000_0000 + p * 4096, &mut b).unwrap();
            assert_eq!(b[8..16], p.to_le_bytes());
        }
        // Not a timing assertion: printed for the reader.
        eprintln!(
            "{} write+read pairs over {pages} maps in {:?}",
            pages,
            t.elapsed()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_request_sequence_is_refused_or_done_without_panic(
            ops in proptest::collection::vec((0u8..4, 0u64..0x20, 0u64..0x5, 0u64..0x10), 1..60)
        ) {
            let f = ram(0x10 * 4096);
            let mut m = IovaMap::new();
            for (op, page, n, off) in ops {
                let (iova, len) = (page * 4096, n * 4096);
                match op {
                    0 => { let _ = m.map(iova, len, &f, off * 4096, true, op != 1); }
                    1 => { let _ = m.unmap(iova, len); }
                    2 => { let mut b = vec![0u8; (len as usize).min(9000)]; let _ = m.read(iova + 7, &mut b); }
                    _ => { let _ = m.write(iova + 3, &vec![5u8; (len as usize).min(9000)]); }
                }
            }
        }
    }
}
