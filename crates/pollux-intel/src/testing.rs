//! A software stand-in for the device side of the descriptor rings, for
//! tests and benches that run without hardware.
//!
//! It does what the 82576 and the 82599 do with a ring, from the
//! datasheets' description of the advanced descriptors (and QEMU's
//! `igb_write_packet_to_guest`/`igb_start_xmit`): fetch descriptors between
//! head and tail, copy frames into/out of the buffers they point to, write
//! back the descriptor with DD last. The rings and buffers must live in
//! memory whose IOVA is its virtual address ([`pollux_core::AnonMemory`]),
//! and the registers in a [`pollux_vfio::Bar::plain_memory`], where the
//! driver's tail writes land. The family gives the tail registers and
//! whether a data descriptor uses the context (CC, or an offload request).
//!
//! Like a device, it writes and reads through whatever address a
//! descriptor holds, so [`SimRx::deliver`] and [`SimTx::process`] are
//! `unsafe`; the module exists only with the `testing` feature.

use std::marker::PhantomData;

use pollux_vfio::Bar;

use crate::adv;
use crate::desc::{AdvRxDesc, AdvTxDesc, DescRing};
use crate::family::Family;
use crate::regs::Regs;

/// The device side of one receive ring.
pub struct SimRx<F: Family> {
    /// The device's head (RDH).
    pub head: u16,
    _family: PhantomData<fn() -> F>,
}

impl<F: Family> Default for SimRx<F> {
    fn default() -> Self {
        SimRx {
            head: 0,
            _family: PhantomData,
        }
    }
}

impl<F: Family> std::fmt::Debug for SimRx<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRx").field("head", &self.head).finish()
    }
}

impl<F: Family> SimRx<F> {
    /// Delivers one frame as the device would: fails (returns false) when
    /// the ring has no descriptor the driver gave it (head == RDT).
    ///
    /// `status` is OR-ed into the write-back status (DD and EOP are added);
    /// `rss` goes into the RSS hash word (0 for a family without RSS).
    ///
    /// # Safety
    /// Every descriptor between the device's head and RDT must hold, as its
    /// buffer address, a pointer to memory the caller owns that is writable
    /// for the ring's buffer size and that nothing reads or writes during
    /// the call: a ring armed by [`crate::rx::RxRing`] over a pool of
    /// [`pollux_core::AnonMemory`] (IOVA = address) is.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn deliver(
        &mut self,
        bar: &Bar,
        queue: u16,
        ring: &DescRing<AdvRxDesc>,
        frame: &[u8],
        status: u32,
        vlan: u16,
        pkt_info: u16,
        rss: u32,
    ) -> bool {
        let tail = bar.read32(F::rdt(queue)) as u16;
        if self.head == tail {
            return false;
        }
        let d = ring.read(self.head);
        let addr = d.qw0 as usize as *mut u8;
        // SAFETY: the driver put the IOVA of a buffer of at least
        // `frame.len()` bytes in the descriptor, and with AnonMemory the IOVA
        // is the virtual address; the driver does not touch a buffer while
        // the descriptor is the device's.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), addr, frame.len()) };
        let wb = AdvRxDesc::writeback_rss(
            status | adv::RXD_STAT_DD | adv::RXD_STAT_EOP,
            frame.len() as u16,
            vlan,
            pkt_info,
            rss,
        );
        // Like the hardware: the descriptor without DD first, then the
        // status word with DD, so the driver never sees DD before the rest.
        ring.write(
            self.head,
            AdvRxDesc {
                qw0: wb.qw0,
                qw1: wb.qw1 & !(adv::RXD_STAT_DD as u64),
            },
        );
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        ring.write(self.head, wb);
        self.head = if self.head + 1 == ring.len() {
            0
        } else {
            self.head + 1
        };
        true
    }

    /// Writes an arbitrary write-back descriptor at the head (a confused
    /// device), with DD set, and advances.
    pub fn deliver_raw(&mut self, ring: &DescRing<AdvRxDesc>, qw0: u64, qw1: u64) {
        ring.write(
            self.head,
            AdvRxDesc {
                qw0,
                qw1: qw1 | adv::RXD_STAT_DD as u64,
            },
        );
        self.head = if self.head + 1 == ring.len() {
            0
        } else {
            self.head + 1
        };
    }
}

/// One frame the simulated device sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentFrame {
    pub bytes: Vec<u8>,
    pub cmd_type_len: u32,
    pub olinfo_status: u32,
    /// The context descriptor in force, if the frame used one.
    pub context: Option<[u32; 4]>,
}

/// The device side of one transmit ring.
pub struct SimTx<F: Family> {
    /// The device's head (TDH).
    pub head: u16,
    context: Option<[u32; 4]>,
    _family: PhantomData<fn() -> F>,
}

impl<F: Family> Default for SimTx<F> {
    fn default() -> Self {
        SimTx {
            head: 0,
            context: None,
            _family: PhantomData,
        }
    }
}

impl<F: Family> std::fmt::Debug for SimTx<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTx")
            .field("head", &self.head)
            .field("context", &self.context)
            .finish()
    }
}

impl<F: Family> SimTx<F> {
    /// Processes every descriptor up to TDT, like a write to TDT makes the
    /// device do; returns the frames, and writes DD back where RS is set.
    /// With `copy` false the frames' bytes are not copied (benches).
    ///
    /// # Safety
    /// Every data descriptor between the device's head and TDT must point at
    /// memory readable for its length that nothing writes during the call:
    /// descriptors written by [`crate::tx::TxRing`] for mbufs of a pool of
    /// [`pollux_core::AnonMemory`] (IOVA = address) are.
    pub unsafe fn process(
        &mut self,
        bar: &Bar,
        queue: u16,
        ring: &DescRing<AdvTxDesc>,
        copy: bool,
        out: &mut Vec<SentFrame>,
    ) -> usize {
        let tail = bar.read32(F::tdt(queue)) as u16;
        let mut n = 0;
        while self.head != tail {
            let i = self.head;
            let d = ring.read(i);
            let is_ctx = d.cmd_type_len & adv::TXD_DTYP_MASK == adv::TXD_DTYP_CTXT;
            if is_ctx {
                self.context = Some([
                    d.buffer_addr as u32,
                    (d.buffer_addr >> 32) as u32,
                    d.cmd_type_len,
                    d.olinfo_status,
                ]);
            } else {
                let len = (d.cmd_type_len & 0xFFFF) as usize;
                let mut bytes = Vec::new();
                if copy {
                    bytes.resize(len, 0);
                    // SAFETY: the driver points the descriptor at `len`
                    // bytes of a buffer it keeps alive until DD; IOVA = VA.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            d.buffer_addr as usize as *const u8,
                            bytes.as_mut_ptr(),
                            len,
                        )
                    };
                }
                // With CC the device applies context 0 to this packet;
                // without it (igbvf) the context serves offload requests.
                let uses_ctx = if F::TXD_CC != 0 {
                    d.olinfo_status & F::TXD_CC != 0
                } else {
                    d.cmd_type_len & adv::TXD_DCMD_VLE != 0
                        || d.olinfo_status & (adv::TXD_POPTS_IXSM | adv::TXD_POPTS_TXSM) != 0
                };
                out.push(SentFrame {
                    bytes,
                    cmd_type_len: d.cmd_type_len,
                    olinfo_status: d.olinfo_status,
                    context: if uses_ctx { self.context } else { None },
                });
                n += 1;
            }
            if d.cmd_type_len & adv::TXD_DCMD_RS != 0 {
                ring.write_word(i, 3, d.olinfo_status | adv::TXD_STAT_DD);
            }
            self.head = if i + 1 == ring.len() { 0 } else { i + 1 };
        }
        n
    }
}

/// The value the driver wrote last to register `off`.
pub fn reg(bar: &Bar, off: u32) -> u32 {
    Regs::read32(bar, off)
}
