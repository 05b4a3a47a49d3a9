//! Checksums the NIC models compute and check: the Internet checksum
//! (RFC 1071) and SCTP's CRC-32C (RFC 9260 appendix A).

/// One's complement sum of `data` (big-endian 16-bit words, odd byte
/// padded) added to `init`, not folded.
pub fn ones_sum(data: &[u8], init: u32) -> u32 {
    let mut s = init as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [b] = chunks.remainder() {
        s += (*b as u64) << 8;
    }
    while s >> 32 != 0 {
        s = (s & 0xffff_ffff) + (s >> 32);
    }
    s as u32
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// CRC-32C (Castagnoli), reflected, as SCTP uses it; the value to store
/// little-endian in the SCTP checksum field.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
