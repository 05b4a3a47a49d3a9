//! ICMP messages (RFC 792).

use super::{be16, need, WireError};
use crate::net::internet_checksum;

/// Type of an echo reply (RFC 792, "Echo or Echo Reply Message").
pub const ICMP_ECHO_REPLY: u8 = 0;
/// Type of an echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;

mod field {
    // RFC 792: every message starts with Type, Code, Checksum; for echo
    // and echo reply ("Echo or Echo Reply Message") the next four octets
    // are Identifier and Sequence Number, then the data.
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const DATA: usize = 8;
}

/// An ICMP message: the buffer is the whole message (the IPv4 payload),
/// which the checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Length of the header: type, code, checksum and the 4 octets every
    /// message type has after them.
    pub const HEADER_LEN: usize = field::DATA;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(buffer.as_ref().len(), field::DATA)?;
        Ok(IcmpPacket { buffer })
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Identifier of an echo, echo reply, timestamp or information message.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence Number of the same messages.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Whether the checksum over the whole message is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(self.buffer.as_ref(), 0) == 0
    }

    /// What follows the header: echo data, or the quoted datagram of an
    /// error message.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t
    }

    #[inline]
    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.buffer.as_mut()[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes())
    }

    /// Computes and writes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = internet_checksum(self.buffer.as_ref(), 0);
        self.set_checksum(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The echo request of `ping -c1 -s 4`: id 0x035a, seq 1, data "abcd".
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x2f, 0xde, 0x03, 0x5a, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];

    #[test]
    fn answers_an_echo() {
        let p = IcmpPacket::new_checked(&ECHO[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (ICMP_ECHO_REQUEST, 0));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x035a, 1));
        assert_eq!(p.data(), b"abcd");
        assert!(p.verify_checksum());
        let mut b = ECHO;
        let mut r = IcmpPacket::new_checked(&mut b[..]).unwrap();
        r.set_msg_type(ICMP_ECHO_REPLY);
        r.set_msg_code(0);
        assert!(!r.verify_checksum());
        r.fill_checksum();
        assert!(r.verify_checksum());
        assert_eq!(r.checksum(), p.checksum() + 0x0800);
    }

    #[test]
    fn refuses_short_messages() {
        for n in 0..8 {
            assert!(IcmpPacket::new_checked(&ECHO[..n]).is_err(), "{n} bytes");
        }
    }
}
