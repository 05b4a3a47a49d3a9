//! MSI-X vectors of a VFIO device, each signalled on an eventfd
//! (`VFIO_DEVICE_SET_IRQS` with `DATA_EVENTFD | ACTION_TRIGGER` on the
//! MSI-X index, Linux `include/uapi/linux/vfio.h`). A poll-mode driver does
//! not need them; control paths and tests that wait for a device do.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// One MSI-X vector's eventfd.
#[derive(Debug)]
pub struct Interrupt {
    fd: EventFd,
}

impl Interrupt {
    pub(crate) fn new() -> std::io::Result<Interrupt> {
        Ok(Interrupt {
            fd: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    pub(crate) fn eventfd(&self) -> &EventFd {
        &self.fd
    }

    /// Waits up to `timeout` for the vector; returns how many times it
    /// fired since the last wait (0: it did not fire in time).
    pub fn wait(&self, timeout: Duration) -> std::io::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fd.read() {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(0);
            }
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_counts_what_fired_and_times_out_otherwise() {
        let i = Interrupt::new().unwrap();
        assert_eq!(i.wait(Duration::from_millis(10)).unwrap(), 0);
        i.eventfd().write(1).unwrap();
        i.eventfd().write(1).unwrap();
        assert_eq!(i.wait(Duration::from_millis(10)).unwrap(), 2);
        assert_eq!(i.wait(Duration::ZERO).unwrap(), 0);
    }
}
