//! The VF side of the PF/VF mailbox, the way the Linux igb PF expects it.
//!
//! Protocol (Linux `igbvf/mbx.c`, DPDK `e1000_mbx.c` `*_vf`, QEMU
//! `igb_set_vfmailbox`/`igb_set_pfmailbox`):
//! - to send: take the buffer (write VFU, read it back set), write the words
//!   to VMBMEM, write REQ (which also drops VFU); the PF reads the message,
//!   sets PFACK and keeps the buffer while it works, then writes its reply
//!   and sets PFSTS, releasing the buffer.
//! - to receive: take the buffer, read the words, write ACK.
//! - PFSTS, PFACK and RSTD clear when V2PMAILBOX is read, so every read goes
//!   through [`Mailbox::read_ctl`], which remembers them until consumed.
//!
//! Every wait has a deadline and returns [`IgbVfError::MailboxTimeout`].

use std::time::{Duration, Instant};

use pollux_vfio::pci::PciAddr;

use crate::error::IgbVfError;
use crate::regs::{self, read_to_clear::V2PMAILBOX_R2C, Regs};

/// How long to sleep between polls of the mailbox: the PF answers from its
/// interrupt handler, in tens of microseconds on hardware and in
/// milliseconds under an emulator.
const POLL: Duration = Duration::from_micros(100);

/// Mailbox state of one VF.
#[derive(Debug)]
pub struct Mailbox {
    addr: PciAddr,
    /// Read-to-clear bits seen but not yet consumed.
    r2c: u32,
    timeout: Duration,
}

impl Mailbox {
    /// A mailbox whose waits give up after `timeout`.
    pub fn new(addr: PciAddr, timeout: Duration) -> Mailbox {
        Mailbox {
            addr,
            r2c: 0,
            timeout,
        }
    }

    /// Reads V2PMAILBOX, keeping the read-to-clear bits it returns.
    pub fn read_ctl(&mut self, r: &impl Regs) -> u32 {
        let v = r.read32(regs::V2PMAILBOX) | self.r2c;
        self.r2c |= v & V2PMAILBOX_R2C;
        v
    }

    /// Whether any bit of `mask` is set (now or since the last read);
    /// consumes those bits.
    pub fn take(&mut self, r: &impl Regs, mask: u32) -> bool {
        let v = self.read_ctl(r);
        self.r2c &= !mask;
        v & mask != 0
    }

    /// Forgets remembered bits (after a reset, stale ones mean nothing).
    pub fn forget(&mut self) {
        self.r2c = 0;
    }

    fn ms(&self) -> u64 {
        self.timeout.as_millis() as u64
    }

    fn timeout(&self, what: &'static str) -> IgbVfError {
        IgbVfError::MailboxTimeout {
            addr: self.addr,
            what,
            ms: self.ms(),
        }
    }

    /// Takes the buffer.
    fn lock(&mut self, r: &impl Regs) -> Result<(), IgbVfError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            r.write32(regs::V2PMAILBOX, regs::MBX_VFU);
            if self.read_ctl(r) & regs::MBX_VFU != 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.timeout("taking the mailbox buffer (the PF holds it)"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until a bit of `mask` is seen, and consumes it.
    pub fn wait(&mut self, r: &impl Regs, mask: u32, what: &'static str) -> Result<(), IgbVfError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if self.take(r, mask) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(what));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Posts a message (at most 16 words).
    pub fn write(&mut self, r: &impl Regs, msg: &[u32]) -> Result<(), IgbVfError> {
        self.lock(r)?;
        // Old message and ack flags refer to what the buffer held before.
        self.take(r, regs::MBX_PFSTS | regs::MBX_PFACK);
        for (i, w) in msg.iter().take(regs::MBX_WORDS).enumerate() {
            r.write32(regs::VMBMEM + 4 * i as u32, *w);
        }
        // REQ interrupts the PF; writing it without VFU releases the buffer.
        r.write32(regs::V2PMAILBOX, regs::MBX_REQ);
        Ok(())
    }

    /// Reads the PF's message into `buf` and acknowledges it.
    pub fn read(&mut self, r: &impl Regs, buf: &mut [u32]) -> Result<(), IgbVfError> {
        self.lock(r)?;
        for (i, w) in buf.iter_mut().take(regs::MBX_WORDS).enumerate() {
            *w = r.read32(regs::VMBMEM + 4 * i as u32);
        }
        r.write32(regs::V2PMAILBOX, regs::MBX_ACK);
        Ok(())
    }

    /// Sends `msg` and waits for the PF's reply to it, read into `reply`.
    /// Unsolicited PF messages that arrive meanwhile are returned in
    /// `pings` order-preserved (word 0 of each) and otherwise skipped.
    pub fn request(
        &mut self,
        r: &impl Regs,
        msg: &[u32],
        reply: &mut [u32],
        pings: &mut Vec<u32>,
    ) -> Result<u32, IgbVfError> {
        self.write(r, msg)?;
        self.wait(r, regs::MBX_PFACK, "waiting for the PF to take the request")?;
        let want = msg[0] & 0xFFFF;
        let deadline = Instant::now() + self.timeout;
        loop {
            self.wait(r, regs::MBX_PFSTS, "waiting for the PF's reply")?;
            self.read(r, reply)?;
            if reply[0] & 0xFFFF == want {
                return Ok(reply[0]);
            }
            pings.push(reply[0]);
            if Instant::now() >= deadline {
                return Err(self.timeout("waiting for the PF's reply"));
            }
        }
    }

    /// An unsolicited PF message, if one is waiting (word 0), acknowledged.
    pub fn poll_message(&mut self, r: &impl Regs) -> Result<Option<u32>, IgbVfError> {
        if !self.take(r, regs::MBX_PFSTS) {
            return Ok(None);
        }
        let mut w = [0u32; 1];
        self.read(r, &mut w)?;
        Ok(Some(w[0]))
    }
}

/// The multicast filter hash the PF programs into its MTA for a VF: 12
/// bits from the last two address bytes, as e1000_hash_mc_addr_vf computes
/// it for a 128-register MTA and filter type 0 (DPDK `e1000_vf.c`).
pub fn mc_hash(addr: [u8; 6]) -> u16 {
    ((addr[4] as u16 >> 4) | ((addr[5] as u16) << 4)) & 0x0FFF
}

/// Builds a SET_MULTICAST message for `addrs`: up to 30 hashes, two per
/// word after word 0, and the overflow flag (the PF then goes multicast
/// promiscuous for the VF) when there are more.
pub fn set_multicast_msg(addrs: &[[u8; 6]]) -> [u32; regs::MBX_WORDS] {
    let mut msg = [0u32; regs::MBX_WORDS];
    let n = addrs.len().min(regs::MAX_MC_HASHES);
    msg[0] = regs::MSG_SET_MULTICAST | (n as u32) << regs::MSGINFO_SHIFT;
    if addrs.len() > regs::MAX_MC_HASHES {
        msg[0] |= regs::SET_MULTICAST_OVERFLOW;
    }
    for (i, a) in addrs.iter().take(n).enumerate() {
        let h = mc_hash(*a) as u32;
        // The PF reads the words as an array of little-endian u16.
        msg[1 + i / 2] |= h << (16 * (i % 2));
    }
    msg
}

/// A MAC address as the two mailbox words the PF reads as six bytes.
pub fn mac_words(mac: [u8; 6]) -> [u32; 2] {
    [
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    ]
}

/// The MAC address in two mailbox words.
pub fn words_mac(w1: u32, w2: u32) -> [u8; 6] {
    let a = w1.to_le_bytes();
    let b = w2.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

#[cfg(test)]
pub(crate) mod sim {
    //! A PF that answers the mailbox like Linux igb does, over registers in
    //! plain memory, for tests.
    use super::*;
    use std::cell::RefCell;

    #[derive(Debug, Default)]
    pub struct PfState {
        pub v2p: u32,
        pub mem: [u32; 16],
        pub mac: Option<[u8; 6]>,
        pub admin_mac: bool,
        pub log: Vec<u32>,
        pub mc_hashes: Vec<u16>,
        pub lpe: u32,
        pub cts: bool,
        pub pending_ping: Option<u32>,
        pub regs: std::collections::HashMap<u32, u32>,
    }

    /// Registers of a VF whose PF is simulated.
    #[derive(Debug, Default)]
    pub struct SimVf(pub RefCell<PfState>);

    impl SimVf {
        fn pf_reply(st: &mut PfState) {
            let msg = st.mem[0];
            st.log.push(msg);
            // PF read the message: ACK (PFACK on the VF side).
            st.v2p |= regs::MBX_PFACK;
            if let Some(p) = st.pending_ping.take() {
                // An unsolicited message overtakes the reply.
                st.mem[0] = p;
                st.v2p |= regs::MBX_PFSTS;
                st.pending_ping = Some(msg);
                return;
            }
            Self::answer(st, msg);
        }

        fn answer(st: &mut PfState, msg: u32) {
            let kind = msg & 0xFFFF;
            let mut reply = msg;
            let ok = match kind {
                regs::MSG_VF_RESET => {
                    st.cts = true;
                    if !st.admin_mac {
                        st.mac = None;
                    }
                    match st.mac {
                        Some(m) => {
                            let w = mac_words(m);
                            st.mem[1] = w[0];
                            st.mem[2] = w[1];
                            st.mem[0] = regs::MSG_VF_RESET | regs::MSGTYPE_ACK;
                        }
                        None => st.mem[0] = regs::MSG_VF_RESET | regs::MSGTYPE_NACK,
                    }
                    st.v2p |= regs::MBX_PFSTS;
                    return;
                }
                _ if !st.cts => false,
                regs::MSG_SET_MAC_ADDR => {
                    if st.admin_mac {
                        false
                    } else {
                        st.mac = Some(words_mac(st.mem[1], st.mem[2]));
                        true
                    }
                }
                regs::MSG_SET_MULTICAST => {
                    let n = ((msg & regs::MSGINFO_MASK) >> regs::MSGINFO_SHIFT) as usize;
                    st.mc_hashes = (0..n.min(30))
                        .map(|i| (st.mem[1 + i / 2] >> (16 * (i % 2))) as u16)
                        .collect();
                    true
                }
                regs::MSG_SET_LPE => {
                    st.lpe = st.mem[1];
                    true
                }
                regs::MSG_SET_VLAN | regs::MSG_SET_PROMISC => true,
                _ => false,
            };
            reply |= if ok {
                regs::MSGTYPE_ACK
            } else {
                regs::MSGTYPE_NACK
            };
            if st.cts {
                reply |= regs::MSGTYPE_CTS;
            }
            st.mem[0] = reply;
            st.v2p |= regs::MBX_PFSTS;
        }
    }

    impl Regs for SimVf {
        fn read32(&self, off: u32) -> u32 {
            let mut st = self.0.borrow_mut();
            match off {
                regs::V2PMAILBOX => {
                    let v = st.v2p;
                    st.v2p &= !V2PMAILBOX_R2C;
                    v
                }
                o if (regs::VMBMEM..regs::VMBMEM + 64).contains(&o) => {
                    st.mem[((o - regs::VMBMEM) / 4) as usize]
                }
                o => st.regs.get(&o).copied().unwrap_or(0),
            }
        }

        fn write32(&self, off: u32, val: u32) {
            let mut st = self.0.borrow_mut();
            match off {
                regs::V2PMAILBOX => {
                    if val & regs::MBX_VFU != 0 {
                        st.v2p |= regs::MBX_VFU;
                    } else {
                        st.v2p &= !regs::MBX_VFU;
                    }
                    if val & regs::MBX_REQ != 0 {
                        Self::pf_reply(&mut st);
                    }
                    if val & regs::MBX_ACK != 0 {
                        // The VF read our message; deliver a held-back reply.
                        if let Some(m) = st.pending_ping.take() {
                            Self::answer(&mut st, m);
                        }
                    }
                }
                o if (regs::VMBMEM..regs::VMBMEM + 64).contains(&o) => {
                    st.mem[((o - regs::VMBMEM) / 4) as usize] = val
                }
                o => {
                    st.regs.insert(o, val);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::*;
    use super::*;

    fn mbx() -> Mailbox {
        Mailbox::new("00:05.0".parse().unwrap(), Duration::from_millis(50))
    }

    #[test]
    fn reset_then_set_mac_with_a_nack_and_ack() {
        let vf = SimVf::default();
        let mut m = mbx();
        let mut reply = [0u32; 3];
        let mut pings = Vec::new();
        let r = m
            .request(&vf, &[regs::MSG_VF_RESET], &mut reply, &mut pings)
            .unwrap();
        assert_eq!(
            r,
            regs::MSG_VF_RESET | regs::MSGTYPE_NACK,
            "no MAC assigned"
        );
        let w = mac_words([2, 0, 0, 0, 0, 1]);
        let r = m
            .request(
                &vf,
                &[regs::MSG_SET_MAC_ADDR, w[0], w[1]],
                &mut reply,
                &mut pings,
            )
            .unwrap();
        assert_eq!(r & regs::MSGTYPE_ACK, regs::MSGTYPE_ACK);
        assert_eq!(vf.0.borrow().mac, Some([2, 0, 0, 0, 0, 1]));
        assert!(pings.is_empty());
    }

    #[test]
    fn admin_mac_comes_back_in_the_reset_reply() {
        let vf = SimVf::default();
        vf.0.borrow_mut().mac = Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        vf.0.borrow_mut().admin_mac = true;
        let mut m = mbx();
        let mut reply = [0u32; 3];
        let r = m
            .request(&vf, &[regs::MSG_VF_RESET], &mut reply, &mut Vec::new())
            .unwrap();
        assert_eq!(r, regs::MSG_VF_RESET | regs::MSGTYPE_ACK);
        assert_eq!(
            words_mac(reply[1], reply[2]),
            [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]
        );
    }

    #[test]
    fn an_unsolicited_message_before_the_reply_is_reported_not_taken_for_it() {
        let vf = SimVf::default();
        let mut m = mbx();
        let mut reply = [0u32; 3];
        m.request(&vf, &[regs::MSG_VF_RESET], &mut reply, &mut Vec::new())
            .unwrap();
        vf.0.borrow_mut().pending_ping = Some(regs::MSG_PF_CONTROL | regs::MSGTYPE_CTS);
        let mut pings = Vec::new();
        let r = m
            .request(&vf, &[regs::MSG_SET_LPE, 1522], &mut reply, &mut pings)
            .unwrap();
        assert_eq!(r & 0xFFFF, regs::MSG_SET_LPE);
        assert_eq!(pings, vec![regs::MSG_PF_CONTROL | regs::MSGTYPE_CTS]);
        assert_eq!(vf.0.borrow().lpe, 1522);
    }

    #[test]
    fn silence_times_out_with_a_typed_error() {
        struct Deaf;
        impl Regs for Deaf {
            fn read32(&self, off: u32) -> u32 {
                if off == regs::V2PMAILBOX {
                    regs::MBX_VFU
                } else {
                    0
                }
            }
            fn write32(&self, _: u32, _: u32) {}
        }
        let mut m = mbx();
        let t = Instant::now();
        let e = m
            .request(&Deaf, &[regs::MSG_VF_RESET], &mut [0; 3], &mut Vec::new())
            .unwrap_err();
        assert!(
            matches!(e, IgbVfError::MailboxTimeout { ms: 50, .. }),
            "{e}"
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn read_to_clear_bits_survive_an_unrelated_read() {
        let vf = SimVf::default();
        vf.0.borrow_mut().v2p = regs::MBX_RSTD | regs::MBX_PFSTS;
        let mut m = mbx();
        // Looking for PFACK reads the register and clears RSTD/PFSTS in the
        // device; the mailbox must still know about them.
        assert!(!m.take(&vf, regs::MBX_PFACK));
        assert!(m.take(&vf, regs::MBX_RSTD));
        assert!(!m.take(&vf, regs::MBX_RSTD));
        assert!(m.take(&vf, regs::MBX_PFSTS));
    }

    #[test]
    fn multicast_hashes_match_the_pf_and_qemu_mta_index() {
        // 01:80:c2:00:00:02: bytes 4,5 = 00,02 -> (0 >> 4) | (2 << 4) = 0x020,
        // which QEMU's igb_receive_assign computes as
        // ((dst[5] << 8 | dst[4]) >> 4) & 0xfff for RCTL.MO = 0.
        let slow = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x02];
        assert_eq!(mc_hash(slow), 0x020);
        let v4 = [0x01, 0x00, 0x5e, 0x7f, 0xab, 0xcd];
        assert_eq!(mc_hash(v4), ((0xcd_u16 << 8 | 0xab) >> 4) & 0xfff);
        let msg = set_multicast_msg(&[slow, v4]);
        assert_eq!(msg[0], regs::MSG_SET_MULTICAST | 2 << 16);
        assert_eq!(msg[1], 0x020 | (mc_hash(v4) as u32) << 16);
        let many = vec![slow; 31];
        let msg = set_multicast_msg(&many);
        assert_eq!(
            msg[0] & regs::SET_MULTICAST_OVERFLOW,
            regs::SET_MULTICAST_OVERFLOW
        );
        assert_eq!((msg[0] & 0x1F0000) >> 16, 30);
    }

    #[test]
    fn the_simulated_pf_stores_what_the_vf_sent() {
        let vf = SimVf::default();
        let mut m = mbx();
        let mut reply = [0u32; 16];
        m.request(&vf, &[regs::MSG_VF_RESET], &mut reply[..3], &mut Vec::new())
            .unwrap();
        let msg = set_multicast_msg(&[[1, 0x80, 0xc2, 0, 0, 2]]);
        m.request(&vf, &msg, &mut reply, &mut Vec::new()).unwrap();
        assert_eq!(vf.0.borrow().mc_hashes, vec![0x020]);
    }
}
