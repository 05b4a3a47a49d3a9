//! TCP headers (RFC 9293).

use super::{be16, be32, need, WireError};

mod field {
    // RFC 9293 section 3.1 ("Header Format", figure 1): Source Port,
    // Destination Port, Sequence Number, Acknowledgment Number, Data
    // Offset (4 bits) and reserved bits, the control bits, Window,
    // Checksum, Urgent Pointer; options up to Data Offset * 4 octets.
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const FIXED_END: usize = 20;
}

/// A TCP segment: header, options and the rest of the buffer as payload
/// (TCP has no length of its own; the IP header's bounds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Control bits (RFC 9293 section 3.1).
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;

    /// Length of the header without options.
    pub const HEADER_LEN: usize = field::FIXED_END;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` if it holds a header whose Data Offset is at least
    /// 5 and fits in the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = TcpPacket { buffer };
        let have = p.buffer.as_ref().len();
        need(have, field::FIXED_END)?;
        let hl = p.header_len();
        if hl < field::FIXED_END {
            return Err(WireError::HeaderLen(hl));
        }
        need(have, hl)?;
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Data Offset in octets (the field counts 32-bit words).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFF] >> 4) as usize) * 4
    }

    /// The control bits CWR..FIN (test with [`Self::SYN`] etc.).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FIXED_END..self.header_len()]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        self.buffer.as_mut()[field::SRC_PORT..field::SRC_PORT + 2].copy_from_slice(&p.to_be_bytes())
    }

    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        self.buffer.as_mut()[field::DST_PORT..field::DST_PORT + 2].copy_from_slice(&p.to_be_bytes())
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.buffer.as_mut()[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN from port 43210 to 80 with an MSS option (Data Offset 6).
    const SYN: [u8; 24] = [
        0xa8, 0xca, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa,
        0xf0, 0xab, 0xcd, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    #[test]
    fn parses_a_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (43210, 80));
        assert_eq!((p.seq_number(), p.ack_number()), (0x1234_5678, 0));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), TcpPacket::<&[u8]>::SYN);
        assert_eq!(
            (p.window_len(), p.checksum(), p.urgent_at()),
            (64240, 0xabcd, 0)
        );
        assert_eq!(p.options(), &[2, 4, 5, 0xb4]);
        assert!(p.payload().is_empty());
        let mut b = SYN;
        let mut q = TcpPacket::new_checked(&mut b[..]).unwrap();
        q.set_src_port(80);
        q.set_dst_port(43210);
        q.set_checksum(0);
        assert_eq!(&b[..4], &[0, 0x50, 0xa8, 0xca]);
        assert_eq!(&b[16..18], &[0, 0]);
    }

    #[test]
    fn refuses_bad_data_offsets() {
        for n in 0..SYN.len() {
            assert!(TcpPacket::new_checked(&SYN[..n]).is_err(), "{n} bytes");
        }
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]),
            Err(WireError::HeaderLen(16))
        );
        b[12] = 0x70;
        assert_eq!(
            TcpPacket::new_checked(&b[..]),
            Err(WireError::Truncated { need: 28, have: 24 })
        );
    }
}
