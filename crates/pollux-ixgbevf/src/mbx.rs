//! The VF side of the mailbox registers: moving one message in or out, in
//! either handshake, every wait with a deadline. What the messages mean is
//! [`crate::proto`]'s business; this is the edge that touches VFMAILBOX and
//! VFMBMEM.
//!
//! The two handshakes (Linux `ixgbevf/mbx.c`, `ixgbevf_mbx_ops_legacy` and
//! `ixgbevf_mbx_ops`):
//!
//! | step | legacy | API 1.5 |
//! | --- | --- | --- |
//! | send | take VFU (write VFU, read it back); flush stale PFSTS/PFACK; write the words; write REQ alone, which drops VFU; wait PFACK | take VFU; flush; write the words; write REQ with VFU still set; wait PFACK; drop VFU |
//! | receive | wait PFSTS; take VFU; read the words; write ACK alone (drops VFU) | wait PFSTS; read the words without VFU; write ACK |
//!
//! PFSTS, PFACK and RSTD clear when VFMAILBOX is read, so every read goes
//! through [`Mailbox::read_ctl`], which remembers them until consumed (as
//! `ixgbevf_read_mailbox_vf` keeps `hw->mbx.vf_mailbox`).

use std::time::{Duration, Instant};

use crate::proto::Answer;
use crate::proto::{
    BringUp, BringUpConfig, Handshake, MbxError, Outcome, PfEvent, Request, Step, Transaction,
};
use crate::regs::{self, read_to_clear::VFMAILBOX_R2C, Regs, MBX_WORDS};

/// How long to sleep between polls: the PF answers from its interrupt
/// handler (Linux polls every 500 us, IXGBE_VF_MBX_INIT_DELAY; we poll
/// faster and give up by deadline instead of by count).
const POLL: Duration = Duration::from_micros(50);

/// Mailbox state of one VF.
#[derive(Debug)]
pub struct Mailbox {
    /// Read-to-clear bits seen but not yet consumed.
    r2c: u32,
    timeout: Duration,
    /// Messages moved, for xstats.
    pub sent: u64,
    pub received: u64,
}

impl Mailbox {
    /// A mailbox whose transactions give up after `timeout`.
    pub fn new(timeout: Duration) -> Mailbox {
        Mailbox {
            r2c: 0,
            timeout,
            sent: 0,
            received: 0,
        }
    }

    /// The per-transaction timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn ms(&self) -> u64 {
        self.timeout.as_millis() as u64
    }

    /// Reads VFMAILBOX, keeping the read-to-clear bits it returns.
    pub fn read_ctl(&mut self, r: &impl Regs) -> u32 {
        let v = r.read32(regs::VFMAILBOX) | self.r2c;
        self.r2c |= v & VFMAILBOX_R2C;
        v
    }

    /// Whether any bit of `mask` is set (now or since it was last seen);
    /// consumes those bits.
    pub fn take(&mut self, r: &impl Regs, mask: u32) -> bool {
        let v = self.read_ctl(r);
        self.r2c &= !mask;
        v & mask != 0
    }

    /// Forgets remembered bits (stale after a reset).
    pub fn forget(&mut self) {
        self.r2c = 0;
    }

    fn wait(
        &mut self,
        r: &impl Regs,
        mask: u32,
        deadline: Instant,
        request: &'static str,
        stage: &'static str,
    ) -> Result<(), MbxError> {
        loop {
            if self.take(r, mask) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MbxError::Timeout {
                    request,
                    stage,
                    ms: self.ms(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Takes the buffer (VFU), both handshakes alike: write VFU, read it
    /// back (Linux 1.5 writes the value read with VFU added; of the bits it
    /// reads back only VFU is the VF's to write).
    fn lock(
        &mut self,
        r: &impl Regs,
        deadline: Instant,
        request: &'static str,
    ) -> Result<(), MbxError> {
        loop {
            r.write32(regs::VFMAILBOX, regs::MBX_VFU);
            if self.read_ctl(r) & regs::MBX_VFU != 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MbxError::Timeout {
                    request,
                    stage: "taking the mailbox buffer (the PF holds it)",
                    ms: self.ms(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Posts `msg` and waits for the PF to take it (PFACK).
    pub fn send(
        &mut self,
        r: &impl Regs,
        hs: Handshake,
        msg: &[u32],
        request: &'static str,
        deadline: Instant,
    ) -> Result<(), MbxError> {
        self.lock(r, deadline, request)?;
        // Old message and ack flags refer to what the buffer held before.
        self.take(r, regs::MBX_PFSTS | regs::MBX_PFACK);
        for (i, w) in msg.iter().take(MBX_WORDS).enumerate() {
            r.write32(regs::VFMBMEM + 4 * i as u32, *w);
        }
        self.sent += 1;
        match hs {
            Handshake::Legacy => {
                // REQ interrupts the PF; written without VFU it releases the
                // buffer, so the PF may answer into it.
                r.write32(regs::VFMAILBOX, regs::MBX_REQ);
                self.wait(
                    r,
                    regs::MBX_PFACK,
                    deadline,
                    request,
                    "waiting for the PF to take the request",
                )
            }
            Handshake::V15 => {
                // The VF keeps the buffer until the PF acknowledged, then
                // gives it back whatever happened (mbx.c out_no_write).
                r.write32(regs::VFMAILBOX, regs::MBX_VFU | regs::MBX_REQ);
                let res = self.wait(
                    r,
                    regs::MBX_PFACK,
                    deadline,
                    request,
                    "waiting for the PF to take the request",
                );
                r.write32(regs::VFMAILBOX, 0);
                res
            }
        }
    }

    /// Reads the PF's message into `buf` once PFSTS shows, and acknowledges
    /// it.
    pub fn receive(
        &mut self,
        r: &impl Regs,
        hs: Handshake,
        buf: &mut [u32],
        request: &'static str,
        deadline: Instant,
    ) -> Result<(), MbxError> {
        self.wait(
            r,
            regs::MBX_PFSTS,
            deadline,
            request,
            "waiting for the PF's reply",
        )?;
        self.read_now(r, hs, buf, request, deadline)
    }

    fn read_now(
        &mut self,
        r: &impl Regs,
        hs: Handshake,
        buf: &mut [u32],
        request: &'static str,
        deadline: Instant,
    ) -> Result<(), MbxError> {
        if hs == Handshake::Legacy {
            self.lock(r, deadline, request)?;
        }
        for (i, w) in buf.iter_mut().take(MBX_WORDS).enumerate() {
            *w = r.read32(regs::VFMBMEM + 4 * i as u32);
        }
        // Legacy: ACK alone also drops VFU. 1.5: the VF never took it.
        r.write32(regs::VFMAILBOX, regs::MBX_ACK);
        self.received += 1;
        Ok(())
    }

    /// An unsolicited PF message, if PFSTS says one is waiting (word 0),
    /// acknowledged. Never waits longer than it takes to get the buffer.
    pub fn poll_message(&mut self, r: &impl Regs, hs: Handshake) -> Result<Option<u32>, MbxError> {
        if !self.take(r, regs::MBX_PFSTS) {
            return Ok(None);
        }
        let mut w = [0u32; 1];
        let deadline = Instant::now() + self.timeout.min(Duration::from_millis(10));
        self.read_now(r, hs, &mut w, "PF message", deadline)?;
        Ok(Some(w[0]))
    }

    /// Runs the bring-up conversation after a VF reset. Unsolicited PF
    /// messages seen meanwhile are in the machine's `events`.
    pub fn bring_up(
        &mut self,
        r: &impl Regs,
        cfg: BringUpConfig,
    ) -> Result<(Outcome, Vec<PfEvent>), MbxError> {
        let mut b = BringUp::new(cfg);
        while let Some(req) = b.next_request() {
            let hs = b.handshake();
            if let Err(e) = self.exchange(r, hs, &req, |w| b.on_reply(w)) {
                if let MbxError::Timeout { stage, ms, .. } = e {
                    return Err(b.on_timeout(stage, ms));
                }
                return Err(e);
            }
        }
        let out = b.outcome().ok_or(MbxError::Finished)?;
        Ok((out, b.events().to_vec()))
    }

    /// One request and its answer after bring-up. PF control messages that
    /// arrive before the reply are returned too.
    pub fn transact(
        &mut self,
        r: &impl Regs,
        hs: Handshake,
        txn: &mut Transaction,
        events: &mut Vec<PfEvent>,
    ) -> Result<Answer, MbxError> {
        let req = txn.request().clone();
        let mut answer = None;
        self.exchange(r, hs, &req, |w| match txn.on_reply(w)? {
            Some(a) => {
                answer = Some(a);
                Ok(Step::Advanced)
            }
            None => {
                let ev = crate::proto::classify_unsolicited(w[0]);
                events.push(ev);
                Ok(Step::Unsolicited(ev))
            }
        })?;
        answer.ok_or(MbxError::Finished)
    }

    /// Sends `req` and feeds what the PF writes back to `on_reply` until it
    /// takes a reply, all within one deadline.
    fn exchange(
        &mut self,
        r: &impl Regs,
        hs: Handshake,
        req: &Request,
        mut on_reply: impl FnMut(&[u32]) -> Result<Step, MbxError>,
    ) -> Result<(), MbxError> {
        let deadline = Instant::now() + self.timeout;
        let name = req.name();
        self.send(r, hs, req.encode().words(), name, deadline)?;
        let mut buf = [0u32; MBX_WORDS];
        let n = req.reply_len().clamp(1, MBX_WORDS);
        loop {
            self.receive(r, hs, &mut buf[..n], name, deadline)?;
            match on_reply(&buf[..n])? {
                Step::Advanced => return Ok(()),
                Step::Unsolicited(_) => continue,
            }
        }
    }
}
