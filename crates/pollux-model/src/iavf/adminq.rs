//! The VF admin queue engine: the admin transmit queue (ATQ) the driver
//! posts commands on and the admin receive queue (ARQ) the PF's replies
//! and events arrive on, each a ring of 32-byte descriptors in guest
//! memory with base, length, head and tail registers.
//!
//! Semantics (Linux `iavf_adminq.c`/DPDK `iavf_adminq.c` and
//! `iavf_adminq_cmd.h`):
//! - the driver writes LEN with the enable bit, then the base, then tail;
//!   the device reads descriptors from head up to tail, writes each back
//!   with DD|CMP and the return code, and moves head. `send_msg_to_pf`
//!   (0x0801) carries a virtchnl message: opcode in cookie_high, payload in
//!   an indirect buffer (BUF|RD flags, addr_high/low, datalen);
//! - the driver pre-posts ARQ buffers (BUF flag, datalen = buffer size) and
//!   gives them by writing ARQ tail one past the last available one; the
//!   device fills the descriptor at head (opcode `send_msg_to_vf`, cookie
//!   high/low = virtchnl opcode/status, datalen = message length), sets
//!   DD|CMP and moves head. A message with no buffer posted waits
//!   (bounded; an overflow sets ARQLEN.OVFL).

use std::collections::VecDeque;

use super::regs::*;
use super::virtchnl::Message;
use crate::model::Ctx;

/// Messages waiting for an ARQ buffer before the queue overflows.
pub const ARQ_BACKLOG: usize = 64;

/// One ring's registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ring {
    /// Base, low half.
    pub bal: u32,
    /// Base, high half.
    pub bah: u32,
    /// Length, error bits and enable.
    pub len: u32,
    /// Head (device owned).
    pub head: u32,
    /// Tail (driver owned).
    pub tail: u32,
}

impl Ring {
    /// The enable bit is set and the ring has entries.
    pub fn enabled(&self) -> bool {
        self.len & AQLEN_ENABLE != 0 && self.entries() > 0
    }
    /// Entries in the ring.
    pub fn entries(&self) -> u32 {
        self.len & AQLEN_LEN_MASK
    }
    /// IOVA of descriptor `i`.
    pub fn desc_addr(&self, i: u32) -> u64 {
        (((self.bah as u64) << 32) | self.bal as u64).wrapping_add(i as u64 * AQ_DESC_LEN as u64)
    }
}

/// `struct iavf_aq_desc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// Flags.
    pub flags: u16,
    /// AQ opcode.
    pub opcode: u16,
    /// Buffer length.
    pub datalen: u16,
    /// Return code.
    pub retval: u16,
    /// virtchnl opcode.
    pub cookie_high: u32,
    /// virtchnl status.
    pub cookie_low: u32,
    /// Parameter 0.
    pub param0: u32,
    /// Parameter 1.
    pub param1: u32,
    /// Buffer address, high half.
    pub addr_high: u32,
    /// Buffer address, low half.
    pub addr_low: u32,
}

impl Desc {
    /// Parses 32 bytes.
    pub fn from_bytes(b: &[u8; AQ_DESC_LEN]) -> Desc {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Desc {
            flags: u16_at(0),
            opcode: u16_at(2),
            datalen: u16_at(4),
            retval: u16_at(6),
            cookie_high: u32_at(8),
            cookie_low: u32_at(12),
            param0: u32_at(16),
            param1: u32_at(20),
            addr_high: u32_at(24),
            addr_low: u32_at(28),
        }
    }
    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; AQ_DESC_LEN] {
        let mut b = [0u8; AQ_DESC_LEN];
        b[0..2].copy_from_slice(&self.flags.to_le_bytes());
        b[2..4].copy_from_slice(&self.opcode.to_le_bytes());
        b[4..6].copy_from_slice(&self.datalen.to_le_bytes());
        b[6..8].copy_from_slice(&self.retval.to_le_bytes());
        b[8..12].copy_from_slice(&self.cookie_high.to_le_bytes());
        b[12..16].copy_from_slice(&self.cookie_low.to_le_bytes());
        b[16..20].copy_from_slice(&self.param0.to_le_bytes());
        b[20..24].copy_from_slice(&self.param1.to_le_bytes());
        b[24..28].copy_from_slice(&self.addr_high.to_le_bytes());
        b[28..32].copy_from_slice(&self.addr_low.to_le_bytes());
        b
    }
    /// The indirect buffer's IOVA.
    pub fn addr(&self) -> u64 {
        ((self.addr_high as u64) << 32) | self.addr_low as u64
    }
}

/// A command taken from the ATQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A virtchnl message to the PF.
    ToPf {
        /// virtchnl opcode.
        opcode: u32,
        /// Payload.
        msg: Vec<u8>,
    },
    /// Something the model answered itself (queue shutdown, or a refused
    /// descriptor already logged).
    Done,
}

/// A message written into the ARQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Descriptor index it went into.
    pub slot: u32,
    /// virtchnl opcode.
    pub opcode: u32,
    /// Whether it was a RESET_IMPENDING event.
    pub reset_event: bool,
}

/// Both admin queues and the ARQ backlog.
#[derive(Debug, Default)]
pub struct AdminQueue {
    /// Admin transmit queue.
    pub atq: Ring,
    /// Admin receive queue.
    pub arq: Ring,
    backlog: VecDeque<(Message, bool)>,
}

impl AdminQueue {
    /// Registers and backlog back to reset (a VF reset clears the admin
    /// queue registers: the drivers detect a reset by ARQLEN.ENABLE going
    /// to 0, Linux `iavf_reset_task`).
    pub fn reset(&mut self) {
        *self = AdminQueue::default();
    }

    /// Messages waiting for an ARQ buffer.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Whether a RESET_IMPENDING event still waits for a buffer.
    pub fn reset_event_waiting(&self) -> bool {
        self.backlog.iter().any(|(_, r)| *r)
    }

    /// Takes the command at ATQ head, writes its descriptor back and moves
    /// head; `None` when head has reached tail or the queue is off.
    pub fn next_command(&mut self, ctx: &mut Ctx<'_>) -> Option<Command> {
        let ring = self.atq;
        if !ring.enabled() || ring.head == ring.tail {
            return None;
        }
        let n = ring.entries();
        if ring.tail >= n || ring.head >= n {
            ctx.log.log(
                format!("ATQ head {} tail {} with {n} entries", ring.head, ring.tail),
                "ATQ tail beyond the ring length (iavf_adminq.c: next_to_use wraps at count)",
            );
            self.atq.len |= AQLEN_VFE;
            self.atq.head = ring.tail.min(n.saturating_sub(1));
            return None;
        }
        let at = ring.desc_addr(ring.head);
        let mut raw = [0u8; AQ_DESC_LEN];
        if ctx.dma_read(at, &mut raw).is_err() {
            self.atq.len |= AQLEN_CRIT;
            self.atq.head = ring.tail;
            return None;
        }
        let mut d = Desc::from_bytes(&raw);
        let (cmd, retval, err) = self.decode(ctx, &d);
        d.flags |= AQ_FLAG_DD | AQ_FLAG_CMP;
        if err {
            d.flags |= AQ_FLAG_ERR;
        }
        d.retval = retval;
        let _ = ctx.dma_write(at, &d.to_bytes());
        self.atq.head = (ring.head + 1) % n;
        Some(cmd)
    }

    fn decode(&mut self, ctx: &mut Ctx<'_>, d: &Desc) -> (Command, u16, bool) {
        match d.opcode {
            AQC_SEND_MSG_TO_PF => {
                let len = d.datalen as usize;
                if len == 0 {
                    return (
                        Command::ToPf {
                            opcode: d.cookie_high,
                            msg: Vec::new(),
                        },
                        0,
                        false,
                    );
                }
                if d.flags & AQ_FLAG_BUF == 0 {
                    ctx.log.log(
                        format!("ATQ send_msg_to_pf with datalen {len} and no BUF flag"),
                        "virtchnl.h: all messages are indirect (BUF flag and a buffer address)",
                    );
                    return (Command::Done, AQ_RC_EFAULT, true);
                }
                if len > AQ_MAX_BUF {
                    ctx.log.log(
                        format!("ATQ send_msg_to_pf of {len} bytes"),
                        format!("beyond the {AQ_MAX_BUF}-byte admin queue buffer (IAVF_MAX_AQ_BUF_SIZE)"),
                    );
                    return (Command::Done, AQ_RC_E2BIG, true);
                }
                let mut msg = vec![0u8; len];
                if ctx.dma_read(d.addr(), &mut msg).is_err() {
                    return (Command::Done, AQ_RC_EFAULT, true);
                }
                (
                    Command::ToPf {
                        opcode: d.cookie_high,
                        msg,
                    },
                    0,
                    false,
                )
            }
            // Sent by iavf_shutdown_adminq (Linux and DPDK) while the ATQ
            // is alive; the firmware acknowledges it.
            AQC_QUEUE_SHUTDOWN => (Command::Done, 0, false),
            other => {
                ctx.log.log(
                    format!("ATQ opcode {other:#06x}"),
                    "a VF's admin queue carries send_msg_to_pf (0x0801) and queue_shutdown \
                     (0x0003) only; the firmware refuses others (iavf_adminq_cmd.h)",
                );
                (Command::Done, AQ_RC_ENOSYS, true)
            }
        }
    }

    /// Queues `msg` for the VF. A VF whose ARQ is off cannot receive (the
    /// PF's send fails): the message is dropped and `false` returned. Too
    /// many waiting messages overflow: ARQLEN.OVFL is set, logged.
    pub fn post(&mut self, ctx: &mut Ctx<'_>, msg: Message, reset_event: bool) -> bool {
        if !self.arq.enabled() {
            return false;
        }
        if self.backlog.len() >= ARQ_BACKLOG {
            self.arq.len |= AQLEN_OVFL;
            ctx.log.log(
                format!("ARQ: {} messages wait for a buffer", self.backlog.len()),
                "the driver posts no admin receive buffers (ARQ tail) and the PF's messages overflow",
            );
            return false;
        }
        self.backlog.push_back((msg, reset_event));
        true
    }

    /// Writes waiting messages into the posted ARQ buffers; returns what
    /// went where.
    pub fn flush(&mut self, ctx: &mut Ctx<'_>) -> Vec<Delivered> {
        let mut done = Vec::new();
        while !self.backlog.is_empty() {
            let ring = self.arq;
            let n = ring.entries();
            if !ring.enabled() || ring.head == ring.tail || ring.tail >= n || ring.head >= n {
                break;
            }
            let at = ring.desc_addr(ring.head);
            let mut raw = [0u8; AQ_DESC_LEN];
            if ctx.dma_read(at, &mut raw).is_err() {
                self.arq.len |= AQLEN_CRIT;
                break;
            }
            let Some((msg, reset_event)) = self.backlog.pop_front() else {
                break;
            };
            let mut d = Desc::from_bytes(&raw);
            let room = d.datalen as usize;
            let mut len = msg.data.len();
            let mut flags = d.flags & (AQ_FLAG_BUF | AQ_FLAG_LB);
            if len > 0 && (d.flags & AQ_FLAG_BUF == 0 || room < len) {
                ctx.log.log(
                    format!(
                        "ARQ descriptor {}: buffer of {room} bytes (flags {:#06x}) for a {len}-byte message",
                        ring.head, d.flags
                    ),
                    "ARQ buffers are posted with the BUF flag and their size in datalen \
                     (iavf_alloc_arq_bufs); the message is cut",
                );
                len = if d.flags & AQ_FLAG_BUF == 0 { 0 } else { room };
                flags |= AQ_FLAG_ERR;
            }
            if len > 0 && ctx.dma_write(d.addr(), &msg.data[..len]).is_err() {
                flags |= AQ_FLAG_ERR;
                len = 0;
            }
            d.flags = flags | AQ_FLAG_DD | AQ_FLAG_CMP;
            d.opcode = AQC_SEND_MSG_TO_VF;
            d.datalen = len as u16;
            d.retval = 0;
            d.cookie_high = msg.opcode;
            d.cookie_low = msg.status as u32;
            d.param0 = 0;
            d.param1 = 0;
            let _ = ctx.dma_write(at, &d.to_bytes());
            done.push(Delivered {
                slot: ring.head,
                opcode: msg.opcode,
                reset_event,
            });
            self.arq.head = (ring.head + 1) % n;
        }
        done
    }
}
