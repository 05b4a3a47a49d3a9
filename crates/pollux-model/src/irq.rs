//! MSI-X vectors as the vfio-user client configures them: one eventfd per
//! vector, given with `VFIO_USER_DEVICE_SET_IRQS` (the semantics of
//! `VFIO_DEVICE_SET_IRQS`, Linux `include/uapi/linux/vfio.h`). QEMU emulates
//! the MSI-X table and PBA itself; the model signals a vector's eventfd and
//! QEMU turns that into the message the guest programmed.

use std::fs::File;
use std::io::Write;

use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
};

/// A SET_IRQS request the model cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrqError {
    /// Vectors beyond the function's count.
    #[error("vectors {start}..{end} asked for, the function has {count}")]
    Range {
        /// First vector.
        start: u32,
        /// One past the last.
        end: u64,
        /// Vectors the function has.
        count: usize,
    },
    /// Flags that name no single data type and action.
    #[error("SET_IRQS flags {0:#x} are not one data type and one action")]
    Flags(u32),
    /// As many eventfds must come as vectors are named (or none, to detach).
    #[error("{fds} eventfds for {count} vectors")]
    FdCount {
        /// Eventfds received.
        fds: usize,
        /// Vectors named.
        count: u32,
    },
}

#[derive(Debug, Default)]
struct Vector {
    fd: Option<File>,
    masked: bool,
    pending: bool,
    fired: u64,
}

/// The function's MSI-X vectors.
#[derive(Debug)]
pub struct Irqs {
    v: Vec<Vector>,
}

impl Irqs {
    /// `n` vectors, none attached.
    pub fn new(n: usize) -> Self {
        Irqs {
            v: (0..n).map(|_| Vector::default()).collect(),
        }
    }

    /// Number of vectors.
    pub fn count(&self) -> usize {
        self.v.len()
    }

    /// Applies one SET_IRQS request for the MSI-X index.
    pub fn set_irqs(
        &mut self,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> Result<(), IrqError> {
        let data =
            flags & (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD);
        let action = flags
            & (VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER);
        if data.count_ones() != 1 || action.count_ones() != 1 {
            return Err(IrqError::Flags(flags));
        }
        // DATA_NONE | ACTION_TRIGGER with count 0 detaches every vector.
        if count == 0 {
            if action == VFIO_IRQ_SET_ACTION_TRIGGER {
                for v in &mut self.v {
                    *v = Vector::default();
                }
            }
            return Ok(());
        }
        let end = start as u64 + count as u64;
        if end > self.v.len() as u64 {
            return Err(IrqError::Range {
                start,
                end,
                count: self.v.len(),
            });
        }
        let range = start as usize..end as usize;
        match (data, action) {
            (VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                if fds.is_empty() {
                    for v in &mut self.v[range] {
                        v.fd = None;
                    }
                } else if fds.len() == count as usize {
                    for (v, fd) in self.v[range].iter_mut().zip(fds) {
                        v.fd = Some(fd);
                    }
                } else {
                    return Err(IrqError::FdCount {
                        fds: fds.len(),
                        count,
                    });
                }
            }
            (VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                for i in range {
                    self.fire(i);
                }
            }
            (VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_ACTION_MASK) => {
                for v in &mut self.v[range] {
                    v.masked = true;
                }
            }
            (VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_ACTION_UNMASK) => {
                for i in range {
                    self.v[i].masked = false;
                    if std::mem::take(&mut self.v[i].pending) {
                        self.fire(i);
                    }
                }
            }
            _ => return Err(IrqError::Flags(flags)),
        }
        Ok(())
    }

    /// Raises vector `i`: signals its eventfd, or leaves it pending while
    /// it is masked or has none. Returns whether it was delivered.
    pub fn fire(&mut self, i: usize) -> bool {
        let Some(v) = self.v.get_mut(i) else {
            return false;
        };
        match (&v.fd, v.masked) {
            (Some(fd), false) => {
                let mut f: &File = fd;
                let delivered = f.write_all(&1u64.to_ne_bytes()).is_ok();
                if delivered {
                    v.fired += 1;
                } else {
                    v.pending = true;
                }
                delivered
            }
            _ => {
                v.pending = true;
                false
            }
        }
    }

    /// Times vector `i` was delivered.
    pub fn fired(&self, i: usize) -> u64 {
        self.v.get(i).map_or(0, |v| v.fired)
    }

    /// Whether vector `i` waits for an unmask or an eventfd.
    pub fn pending(&self, i: usize) -> bool {
        self.v.get(i).is_some_and(|v| v.pending)
    }

    /// Device reset: pending and masked state go; the client's eventfds
    /// stay attached (it detaches them itself).
    pub fn reset(&mut self) {
        for v in &mut self.v {
            v.pending = false;
            v.masked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    fn eventfd() -> File {
        // SAFETY: eventfd(2) with valid flags returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        unsafe { File::from_raw_fd(fd) }
    }

    fn count(f: &File) -> u64 {
        let mut b = [0u8; 8];
        let mut r: &File = f;
        match r.read(&mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            _ => 0,
        }
    }

    const EVENTFD_TRIGGER: u32 = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

    #[test]
    fn a_vector_fires_its_eventfd_and_waits_while_masked() {
        let mut irqs = Irqs::new(3);
        let (a, b) = (eventfd(), eventfd());
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        irqs.set_irqs(EVENTFD_TRIGGER, 1, 2, vec![a2, b2]).unwrap();
        assert!(!irqs.fire(0), "vector 0 has no eventfd");
        assert!(irqs.pending(0));
        assert!(irqs.fire(1));
        assert!(irqs.fire(1));
        assert_eq!(count(&a), 2);
        irqs.set_irqs(
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
            2,
            1,
            vec![],
        )
        .unwrap();
        assert!(!irqs.fire(2));
        assert_eq!(count(&b), 0);
        irqs.set_irqs(
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
            2,
            1,
            vec![],
        )
        .unwrap();
        assert_eq!(count(&b), 1, "the pending vector fires on unmask");
        // Loopback trigger from the client.
        irqs.set_irqs(
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            1,
            1,
            vec![],
        )
        .unwrap();
        assert_eq!(count(&a), 1);
        assert_eq!(irqs.fired(1), 3);
        // Detach all.
        irqs.set_irqs(
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            0,
            vec![],
        )
        .unwrap();
        assert!(!irqs.fire(1));
    }

    #[test]
    fn bad_requests_are_refused_and_change_nothing() {
        let mut irqs = Irqs::new(2);
        assert!(matches!(
            irqs.set_irqs(EVENTFD_TRIGGER, 1, 2, vec![eventfd(), eventfd()]),
            Err(IrqError::Range { .. })
        ));
        assert!(matches!(
            irqs.set_irqs(EVENTFD_TRIGGER, 0, 2, vec![eventfd()]),
            Err(IrqError::FdCount { fds: 1, count: 2 })
        ));
        assert!(matches!(
            irqs.set_irqs(EVENTFD_TRIGGER | VFIO_IRQ_SET_DATA_NONE, 0, 1, vec![]),
            Err(IrqError::Flags(_))
        ));
        assert!(matches!(
            irqs.set_irqs(0, 0, 1, vec![]),
            Err(IrqError::Flags(0))
        ));
        assert!(!irqs.fire(0) && !irqs.fire(7));
    }
}
