//! RSS: the Toeplitz hash NICs compute over packet fields to spread flows over queues.

/// The default 40-byte key of DPDK and of Microsoft's RSS specification.
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Toeplitz hash of `input` with `key` (at least `input.len() + 4` bytes long).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The 32-bit window of the key that lines up with the current input bit.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | ((next >> (7 - bit)) & 1) as u32;
        }
    }
    hash
}

/// The hash a NIC computes for an IPv4 frame: over (src, dst, src port, dst port) for TCP
/// and UDP, over (src, dst) for other IPv4; `None` for frames that are not IPv4.
pub fn hash_ipv4_frame(key: &[u8], frame: &[u8]) -> Option<u32> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let mut input = [0u8; 12];
    input[..8].copy_from_slice(&ip[12..20]);
    let proto = ip[9];
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if (proto == 6 || proto == 17) && !fragment && ip.len() >= ihl + 4 {
        input[8..12].copy_from_slice(&ip[ihl..ihl + 4]);
        Some(toeplitz(key, &input))
    } else {
        Some(toeplitz(key, &input[..8]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], pa: u16, b: [u8; 4], pb: u16) -> Vec<u8> {
        // Input order: source address, destination address, source port, destination port.
        [&a[..], &b[..], &pa.to_be_bytes(), &pb.to_be_bytes()].concat()
    }

    /// Known answers from Microsoft's "Verifying the RSS Hash Calculation" (IPv4 table).
    #[test]
    fn microsoft_verification_suite_ipv4() {
        let cases = [
            (
                [66, 9, 149, 187],
                2794,
                [161, 142, 100, 80],
                1766,
                0x51ccc178u32,
                0x323e8fc2u32,
            ),
            (
                [199, 92, 111, 2],
                14230,
                [65, 69, 140, 83],
                4739,
                0xc626b0ea,
                0xd718262a,
            ),
            (
                [24, 19, 198, 95],
                12898,
                [12, 22, 207, 184],
                38024,
                0x5c2b394a,
                0xd2d0a5de,
            ),
            (
                [38, 27, 205, 30],
                48228,
                [209, 142, 163, 6],
                2217,
                0xafc7327f,
                0x82989176,
            ),
            (
                [153, 39, 163, 191],
                44251,
                [202, 188, 127, 2],
                1303,
                0x10e828a2,
                0x5d1809c5,
            ),
        ];
        for (src, sport, dst, dport, with_ports, addrs_only) in cases {
            let input = v4(src, sport, dst, dport);
            assert_eq!(
                toeplitz(&DEFAULT_KEY, &input),
                with_ports,
                "{src:?}:{sport}"
            );
            assert_eq!(toeplitz(&DEFAULT_KEY, &input[..8]), addrs_only, "{src:?}");
        }
    }

    #[test]
    fn frames_are_hashed_over_the_right_fields() {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 12..14 + 16].copy_from_slice(&[66, 9, 149, 187]);
        f[14 + 16..14 + 20].copy_from_slice(&[161, 142, 100, 80]);
        f[34..36].copy_from_slice(&2794u16.to_be_bytes());
        f[36..38].copy_from_slice(&1766u16.to_be_bytes());
        assert_eq!(hash_ipv4_frame(&DEFAULT_KEY, &f), Some(0x51ccc178));
        f[14 + 9] = 1; // ICMP: addresses only
        assert_eq!(hash_ipv4_frame(&DEFAULT_KEY, &f), Some(0x323e8fc2));
        f[12] = 0x86;
        assert_eq!(hash_ipv4_frame(&DEFAULT_KEY, &f), None);
    }
}
