//! The Toeplitz hash used for receive-side scaling (RSS) by Intel NICs and
//! specified by Microsoft ("RSS hashing functions" and "Verifying the RSS
//! Hash Calculation", Windows driver documentation).
//!
//! For every bit of the input, most significant bit of the first byte
//! first, that is set, the 32 key bits starting at the same bit position
//! are XORed into the result. Key bits beyond the end of the key count as
//! zero, so any key length works (NICs use 40 bytes: 36 bytes of input at
//! most, for IPv6 with ports, plus 4).
//!
//! The inputs NICs hash are built with [`ipv4_input`] and [`ipv6_input`]:
//! source address, destination address, then (for TCP/UDP hashing) source
//! port and destination port, all in network byte order.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The key Microsoft's verification examples use (40 bytes); also a
/// common default NIC key.
pub const MS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key`.
pub fn hash(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| key.get(i).copied().unwrap_or(0) as u64;
    // A 64-bit window over the key: the top 32 bits are the key bits
    // starting at the current input bit.
    let mut window: u64 = (0..8).fold(0, |w, i| (w << 8) | key_byte(i));
    let mut result = 0u32;
    for (byte_idx, &b) in input.iter().enumerate() {
        for bit in 0..8 {
            if b & (0x80 >> bit) != 0 {
                result ^= (window >> (32 - bit)) as u32;
            }
        }
        // Slide the window by one byte.
        window = (window << 8) | key_byte(byte_idx + 8);
    }
    result
}

/// Hash input for IPv4: addresses, then ports if given.
pub fn ipv4_input(src: Ipv4Addr, dst: Ipv4Addr, ports: Option<(u16, u16)>) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    if let Some((sp, dp)) = ports {
        v.extend_from_slice(&sp.to_be_bytes());
        v.extend_from_slice(&dp.to_be_bytes());
    }
    v
}

/// Hash input for IPv6: addresses, then ports if given.
pub fn ipv6_input(src: Ipv6Addr, dst: Ipv6Addr, ports: Option<(u16, u16)>) -> Vec<u8> {
    let mut v = Vec::with_capacity(36);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    if let Some((sp, dp)) = ports {
        v.extend_from_slice(&sp.to_be_bytes());
        v.extend_from_slice(&dp.to_be_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: &str, sport: u16, dst: &str, dport: u16) -> (Vec<u8>, Vec<u8>) {
        let (s, d) = (src.parse().unwrap(), dst.parse().unwrap());
        (
            ipv4_input(s, d, Some((sport, dport))),
            ipv4_input(s, d, None),
        )
    }

    /// Microsoft, "Verifying the RSS Hash Calculation": IPv4 examples
    /// (source, destination, TCP/IPv4 hash, IPv4-only hash).
    #[test]
    fn microsoft_ipv4_vectors() {
        let cases = [
            (
                "66.9.149.187",
                2794,
                "161.142.100.80",
                1766,
                0x51cc_c178,
                0x323e_8fc2,
            ),
            (
                "199.92.111.2",
                14230,
                "65.69.140.83",
                4739,
                0xc626_b0ea,
                0xd718_262a,
            ),
            (
                "24.19.198.95",
                12898,
                "12.22.207.184",
                38024,
                0x5c2b_394a,
                0xd2d0_a5de,
            ),
            (
                "38.27.205.30",
                48228,
                "209.142.163.6",
                2217,
                0xafc7_327f,
                0x8298_9176,
            ),
            (
                "153.39.163.191",
                44251,
                "202.188.127.2",
                1303,
                0x10e8_28a2,
                0x5d18_09c5,
            ),
        ];
        for (s, sp, d, dp, tcp, ip) in cases {
            let (with_ports, addrs) = v4(s, sp, d, dp);
            assert_eq!(hash(&MS_KEY, &with_ports), tcp, "{s}:{sp} -> {d}:{dp} TCP");
            assert_eq!(hash(&MS_KEY, &addrs), ip, "{s} -> {d} IP");
        }
    }

    /// The same document's first IPv6 example.
    #[test]
    fn microsoft_ipv6_vector() {
        let s: Ipv6Addr = "3ffe:2501:200:1fff::7".parse().unwrap();
        let d: Ipv6Addr = "3ffe:2501:200:3::1".parse().unwrap();
        assert_eq!(
            hash(&MS_KEY, &ipv6_input(s, d, Some((2794, 1766)))),
            0x4020_7d3d
        );
        assert_eq!(hash(&MS_KEY, &ipv6_input(s, d, None)), 0x2cc1_8cd5);
    }

    #[test]
    fn short_keys_and_empty_input_do_not_panic() {
        assert_eq!(hash(&[], &[1, 2, 3]), 0);
        assert_eq!(hash(&MS_KEY, &[]), 0);
        // One set bit selects the first 32 key bits.
        assert_eq!(hash(&MS_KEY, &[0x80]), 0x6d5a_56da);
    }
}
