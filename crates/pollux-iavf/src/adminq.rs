//! The VF's admin queue: the send (ATQ) and receive (ARQ) rings of 32-byte
//! descriptors in DMA memory, their buffers, and the registers that run
//! them. This is the edge that touches ATQ*/ARQ* and DMA memory; what the
//! messages mean is [`crate::proto`]'s business.
//!
//! As Linux `iavf_adminq.c` runs it: both rings `AQ_LEN` (32) entries, each
//! entry with a 4 KiB buffer; registers programmed head and tail 0, LEN
//! with ENABLE, then the base address; every ARQ descriptor pre-posted with
//! its buffer (flags BUF and LB, datalen the buffer size) and the ARQ tail
//! at `len - 1`. A message to the PF is an indirect `send_msg_to_pf`
//! descriptor with the virtchnl opcode in `cookie_high`; it is done when
//! ATQH moves past it ("AQ designers suggest use of head for better timing
//! reliability than DD bit"). A message from the PF is the ARQ element
//! between our next-to-clean and ARQH; its descriptor is re-posted and the
//! tail set to it once read.

use std::time::{Duration, Instant};

use pollux_core::barrier::{dma_rmb, dma_wmb};
use pollux_core::{DmaRegion, MemError, MemoryProvider};

use crate::desc::{AqSlot, DescRing};
use crate::proto::{op_name, AqDesc, VcError};
use crate::regs::{self, Regs, AQ_BUF_SIZE, AQ_LEN};

/// How long to sleep between polls of ATQH (Linux polls every 50 us).
const POLL: Duration = Duration::from_micros(20);

/// The admin queue of one VF.
pub struct AdminQueue {
    atq: DescRing<AqSlot>,
    arq: DescRing<AqSlot>,
    atq_bufs: DmaRegion,
    arq_bufs: DmaRegion,
    atq_next: u16,
    arq_next: u16,
    /// Messages moved, for xstats.
    pub sent: u64,
    pub received: u64,
}

/// Copies `data` into `region` at `off`; false (nothing written) when it
/// does not fit.
fn write_bytes(region: &DmaRegion, off: usize, data: &[u8]) -> bool {
    match off.checked_add(data.len()) {
        Some(end) if end <= region.len() => {}
        _ => return false,
    }
    for (i, b) in data.iter().enumerate() {
        // SAFETY: off + i < region.len(), checked above; a byte access has
        // no alignment; volatile because the device reads the buffer.
        unsafe { region.as_ptr().add(off + i).write_volatile(*b) };
    }
    true
}

/// Copies `len` bytes of `region` at `off` into `out` (cleared first);
/// false when the range is outside the region.
fn read_bytes(region: &DmaRegion, off: usize, len: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    match off.checked_add(len) {
        Some(end) if end <= region.len() => {}
        _ => return false,
    }
    out.extend((0..len).map(|i| {
        // SAFETY: off + i < region.len(), checked above; volatile because
        // the device wrote the buffer.
        unsafe { region.as_ptr().add(off + i).read_volatile() }
    }));
    true
}

impl AdminQueue {
    /// Rings and buffers from `mem` (DMA memory of the VF's container; for
    /// tests, memory the software PF can reach).
    pub fn new(mem: &dyn MemoryProvider) -> Result<AdminQueue, MemError> {
        let n = AQ_LEN as usize;
        let ring = |mem: &dyn MemoryProvider| -> Result<DescRing<AqSlot>, MemError> {
            let r = mem.allocate((n * 32).next_multiple_of(4096))?;
            DescRing::new(r, AQ_LEN).ok_or(MemError::Empty)
        };
        Ok(AdminQueue {
            atq: ring(mem)?,
            arq: ring(mem)?,
            atq_bufs: mem.allocate(n * AQ_BUF_SIZE)?,
            arq_bufs: mem.allocate(n * AQ_BUF_SIZE)?,
            atq_next: 0,
            arq_next: 0,
            sent: 0,
            received: 0,
        })
    }

    fn atq_buf_iova(&self, i: u16) -> u64 {
        self.atq_bufs.iova().0 + (i as usize * AQ_BUF_SIZE) as u64
    }

    fn arq_buf_iova(&self, i: u16) -> u64 {
        self.arq_bufs.iova().0 + (i as usize * AQ_BUF_SIZE) as u64
    }

    fn write_desc(ring: &DescRing<AqSlot>, i: u16, d: &AqDesc) {
        for (h, q) in d.to_qwords().into_iter().enumerate() {
            ring.write_qword(i, h, q);
        }
    }

    fn read_desc(ring: &DescRing<AqSlot>, i: u16) -> AqDesc {
        AqDesc::from_qwords([0, 1, 2, 3].map(|h| ring.read_qword(i, h)))
    }

    /// Programs both queues (iavf_init_adminq: iavf_config_asq_regs,
    /// iavf_config_arq_regs) and checks that the base address took. Call
    /// after a VF reset, when the PF left VFGEN_RSTAT done.
    pub fn init(&mut self, r: &impl Regs) -> Result<(), VcError> {
        self.atq_next = 0;
        self.arq_next = 0;
        for i in 0..AQ_LEN {
            Self::write_desc(&self.atq, i, &AqDesc::default());
            Self::write_desc(
                &self.arq,
                i,
                &AqDesc::arq_posted(self.arq_buf_iova(i), AQ_BUF_SIZE),
            );
        }
        // The descriptors above reach memory before the device learns the
        // ring base from the registers below.
        dma_wmb();
        let (atq, arq) = (self.atq.iova().0, self.arq.iova().0);
        r.write32(regs::VF_ATQH, 0);
        r.write32(regs::VF_ATQT, 0);
        r.write32(regs::VF_ATQLEN, AQ_LEN as u32 | regs::AQLEN_ENABLE);
        r.write32(regs::VF_ATQBAL, atq as u32);
        r.write32(regs::VF_ATQBAH, (atq >> 32) as u32);
        r.write32(regs::VF_ARQH, 0);
        r.write32(regs::VF_ARQT, 0);
        r.write32(regs::VF_ARQLEN, AQ_LEN as u32 | regs::AQLEN_ENABLE);
        r.write32(regs::VF_ARQBAL, arq as u32);
        r.write32(regs::VF_ARQBAH, (arq >> 32) as u32);
        // Every pre-posted buffer is the device's.
        r.write32(regs::VF_ARQT, AQ_LEN as u32 - 1);
        if r.read32(regs::VF_ATQBAL) != atq as u32 || r.read32(regs::VF_ARQBAL) != arq as u32 {
            return Err(VcError::AdminQueue {
                what: "the ATQ/ARQ base address did not take (the VF is still in reset?)".into(),
            });
        }
        Ok(())
    }

    /// Stops both queues (iavf_shutdown_asq/arq).
    pub fn shutdown(&mut self, r: &impl Regs) {
        for reg in [
            regs::VF_ATQH,
            regs::VF_ATQT,
            regs::VF_ATQLEN,
            regs::VF_ATQBAL,
            regs::VF_ATQBAH,
            regs::VF_ARQH,
            regs::VF_ARQT,
            regs::VF_ARQLEN,
            regs::VF_ARQBAL,
            regs::VF_ARQBAH,
        ] {
            r.write32(reg, 0);
        }
    }

    /// Whether the queues are enabled: a PF reset of the VF clears
    /// ARQLEN.ENABLE (Linux iavf_watchdog_task detects resets so).
    pub fn enabled(r: &impl Regs) -> bool {
        let v = r.read32(regs::VF_ARQLEN);
        v != u32::MAX && v & regs::AQLEN_ENABLE != 0
    }

    /// Posts one message and waits (until `deadline`) for the firmware to
    /// take it.
    pub fn send(
        &mut self,
        r: &impl Regs,
        v_opcode: u32,
        payload: &[u8],
        deadline: Instant,
        timeout_ms: u64,
    ) -> Result<(), VcError> {
        let op = op_name(v_opcode);
        let len = r.read32(regs::VF_ATQLEN);
        if len == u32::MAX || len & regs::AQLEN_ENABLE == 0 {
            return Err(VcError::AdminQueue {
                what: format!("{op}: the send queue is disabled (ATQLEN {len:#x}): VF reset?"),
            });
        }
        let head = r.read32(regs::VF_ATQH);
        if head != self.atq_next as u32 {
            return Err(VcError::AdminQueue {
                what: format!(
                    "{op}: ATQH is {head}, the driver's next descriptor {} (overrun or reset)",
                    self.atq_next
                ),
            });
        }
        let i = self.atq_next;
        if payload.len() > AQ_BUF_SIZE
            || !write_bytes(&self.atq_bufs, i as usize * AQ_BUF_SIZE, payload)
        {
            return Err(VcError::BadRequest {
                op,
                why: "larger than an admin queue buffer",
            });
        }
        let d = AqDesc::send_msg_to_pf(v_opcode, payload.len(), self.atq_buf_iova(i));
        Self::write_desc(&self.atq, i, &d);
        self.atq_next = (i + 1) % AQ_LEN;
        // Buffer and descriptor reach memory before the tail write lets
        // the firmware fetch them.
        dma_wmb();
        r.write32(regs::VF_ATQT, self.atq_next as u32);
        self.sent += 1;
        loop {
            let h = r.read32(regs::VF_ATQH);
            if h == self.atq_next as u32 {
                break;
            }
            let l = r.read32(regs::VF_ATQLEN);
            if l == u32::MAX || l & regs::AQLEN_ENABLE == 0 {
                return Err(VcError::AdminQueue {
                    what: format!("{op}: the send queue was disabled while waiting (VF reset)"),
                });
            }
            if h >= AQ_LEN as u32 {
                return Err(VcError::AdminQueue {
                    what: format!("{op}: ATQH {h:#x} outside the ring (VF reset?)"),
                });
            }
            if Instant::now() >= deadline {
                return Err(VcError::Timeout {
                    op,
                    stage: "waiting for the firmware to take the message (ATQH)",
                    ms: timeout_ms,
                });
            }
            std::thread::sleep(POLL);
        }
        // The head moved: the firmware's write-back of the descriptor is
        // ordered before what we read of it below.
        dma_rmb();
        let wb = Self::read_desc(&self.atq, i);
        if wb.flags & regs::AQ_FLAG_DD != 0 && (wb.retval != 0 || wb.flags & regs::AQ_FLAG_ERR != 0)
        {
            return Err(VcError::AdminQueue {
                what: format!(
                    "{op}: the firmware refused the message (retval {:#x}, flags {:#06x})",
                    wb.retval, wb.flags
                ),
            });
        }
        Ok(())
    }

    /// The next PF message, if ARQH says one is waiting: its descriptor,
    /// and its payload copied into `buf` (at most a buffer, even if the
    /// descriptor claims more). The element is given back to the firmware.
    pub fn receive(&mut self, r: &impl Regs, buf: &mut Vec<u8>) -> Result<Option<AqDesc>, VcError> {
        let ntu = r.read32(regs::VF_ARQH);
        if ntu == u32::MAX {
            return Err(VcError::AdminQueue {
                what: "ARQH reads all ones (VF in reset?)".into(),
            });
        }
        let ntu = ntu & regs::AQH_MASK;
        if ntu == self.arq_next as u32 {
            return Ok(None);
        }
        if ntu >= AQ_LEN as u32 {
            return Err(VcError::AdminQueue {
                what: format!("ARQH {ntu} outside the ring"),
            });
        }
        // ARQH moved past the element: the firmware's write-back of it is
        // ordered before the reads below.
        dma_rmb();
        let i = self.arq_next;
        let d = Self::read_desc(&self.arq, i);
        let n = (d.datalen as usize).min(AQ_BUF_SIZE);
        read_bytes(&self.arq_bufs, i as usize * AQ_BUF_SIZE, n, buf);
        Self::write_desc(
            &self.arq,
            i,
            &AqDesc::arq_posted(self.arq_buf_iova(i), AQ_BUF_SIZE),
        );
        // The re-posted descriptor reaches memory before the tail gives it
        // back.
        dma_wmb();
        r.write32(regs::VF_ARQT, i as u32);
        self.arq_next = (i + 1) % AQ_LEN;
        self.received += 1;
        Ok(Some(d))
    }
}

impl std::fmt::Debug for AdminQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminQueue")
            .field("atq", &self.atq)
            .field("arq", &self.arq)
            .field("atq_next", &self.atq_next)
            .field("arq_next", &self.arq_next)
            .finish()
    }
}
