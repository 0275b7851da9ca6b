//! The hash functions a table can be created with, chosen by a stable id recorded in the
//! table (ARCHITECTURE.md, rule 2): every process and every binary of the group computes
//! the same hash from the key, so no binary needs another's precomputed hashes.
//!
//! Both give DPDK's values for the same key and initial value: [`HashFunction::Crc32c`] as
//! `rte_hash_crc` (CRC32C without inversion, eight bytes at a time, then four, two, one),
//! [`HashFunction::Jhash`] as `rte_jhash` (Bob Jenkins' lookup3 `hashlittle`).

use super::HashError;

/// Which function hashes a table's keys. The discriminant is the id stored in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HashFunction {
    /// CRC32C: the CPU's `crc32` instruction where it has SSE4.2, else a table, with the
    /// same result. DPDK's default.
    Crc32c = 1,
    /// Bob Jenkins' lookup3 hash, as DPDK's `rte_jhash`.
    Jhash = 2,
}

impl HashFunction {
    /// The function a table recorded, refusing an id this binary does not know.
    pub(crate) fn from_id(table: &str, id: u32) -> Result<Self, HashError> {
        match id {
            1 => Ok(HashFunction::Crc32c),
            2 => Ok(HashFunction::Jhash),
            _ => Err(HashError::UnknownFunction {
                name: table.into(),
                id,
            }),
        }
    }

    /// Its name, for tools.
    pub fn name(self) -> &'static str {
        match self {
            HashFunction::Crc32c => "crc32c",
            HashFunction::Jhash => "jhash",
        }
    }
}

/// One process's way of computing a table's hash: the function, its initial value, and
/// whether this CPU has the CRC32C instruction (checked once, when the handle is made).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hasher {
    function: HashFunction,
    init_val: u32,
    crc_instruction: bool,
}

impl Hasher {
    pub(crate) fn new(function: HashFunction, init_val: u32) -> Self {
        Hasher {
            function,
            init_val,
            crc_instruction: crc32c_instruction_present(),
        }
    }

    pub(crate) fn function(&self) -> HashFunction {
        self.function
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u32 {
        match self.function {
            HashFunction::Crc32c if self.crc_instruction => {
                // SAFETY: the CPU has SSE4.2 (checked in `new`).
                unsafe { crc32c_instruction(key, self.init_val) }
            }
            HashFunction::Crc32c => crc32c_table(key, self.init_val),
            HashFunction::Jhash => jhash(key, self.init_val),
        }
    }
}

fn crc32c_instruction_present() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("sse4.2");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// CRC32C with the CPU's instruction: eight bytes at a time, then four, two, one.
///
/// # Safety
/// The CPU has SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_instruction(key: &[u8], init: u32) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut crc = init;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
        // The 64-bit form's result fits in 32 bits.
        crc = _mm_crc32_u64(crc as u64, v) as u32;
    }
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        crc = _mm_crc32_u32(
            crc,
            u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]),
        );
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        crc = _mm_crc32_u16(crc, u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(b) = rest.first() {
        crc = _mm_crc32_u8(crc, *b);
    }
    crc
}

/// Never called: no CPU without x86_64 has the instruction (`crc_instruction_present`).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn crc32c_instruction(key: &[u8], init: u32) -> u32 {
    crc32c_table(key, init)
}

/// CRC32C's reflected polynomial.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// The byte-at-a-time table of CRC32C, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ CRC32C_POLY
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC32C a byte at a time: the instruction's result, on any CPU (the order in which the
/// instruction takes the bytes does not change a CRC).
fn crc32c_table(key: &[u8], init: u32) -> u32 {
    key.iter().fold(init, |crc, b| {
        CRC32C_TABLE[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// lookup3's mixing of three words.
#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's final mixing.
#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

/// Bob Jenkins' lookup3 `hashlittle`, which DPDK's `rte_jhash` computes.
fn jhash(key: &[u8], init: u32) -> u32 {
    let start = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(init);
    let (mut a, mut b, mut c) = (start, start, start);
    let word = |w: &[u8; 12], i: usize| u32::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
    // Every whole block of twelve bytes but the last is mixed; the last, whole or not,
    // goes through the final mix.
    let mut rest = key;
    while let Some((block, after)) = rest.split_first_chunk::<12>() {
        if after.is_empty() {
            break;
        }
        a = a.wrapping_add(word(block, 0));
        b = b.wrapping_add(word(block, 4));
        c = c.wrapping_add(word(block, 8));
        mix(&mut a, &mut b, &mut c);
        rest = after;
    }
    if rest.is_empty() {
        return c;
    }
    // The last 1 to 12 bytes, zero-padded into the three words.
    let (lo, hi) = match rest.split_first_chunk::<8>() {
        Some((first, more)) => (u64::from_le_bytes(*first), tail_word(key, more.len())),
        None => (tail_word(key, rest.len()), 0),
    };
    a = a.wrapping_add(lo as u32);
    b = b.wrapping_add((lo >> 32) as u32);
    c = c.wrapping_add(hi as u32);
    final_mix(&mut a, &mut b, &mut c);
    c
}

/// The last `n` (0 to 8) bytes of `bytes` as a little-endian word, zero-padded: one load
/// when `bytes` holds eight or more.
#[inline(always)]
pub(crate) fn tail_word(bytes: &[u8], n: usize) -> u64 {
    match bytes.last_chunk::<8>() {
        Some(last) if n != 0 => u64::from_le_bytes(*last) >> (8 * (8 - n)),
        _ => le_word(&bytes[bytes.len() - n..]),
    }
}

/// Up to eight bytes as a little-endian word, zero-padded: how a short key's last bytes are
/// hashed and stored. At most three loads, no loop and no call to memcpy.
#[inline(always)]
fn le_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let at = |i: usize| u64::from(bytes[i]) << (8 * i);
    let u32_at = |i: usize| {
        u64::from(u32::from_le_bytes([
            bytes[i],
            bytes[i + 1],
            bytes[i + 2],
            bytes[i + 3],
        ])) << (8 * i)
    };
    match n {
        0 => 0,
        // Overlapping reads put the same bytes in the same places.
        1..=3 => at(0) | at(n / 2) | at(n - 1),
        4..=7 => u32_at(0) | u32_at(n - 4),
        _ => u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_gives_the_standard_check_value_both_ways() {
        // CRC-32C of "123456789", with the standard's inversion before and after.
        let check = |f: fn(&[u8], u32) -> u32| !f(b"123456789", !0);
        assert_eq!(check(crc32c_table), 0xe306_9283);
        if crc32c_instruction_present() {
            // SAFETY: the CPU has SSE4.2.
            let hw = |k: &[u8], i| unsafe { crc32c_instruction(k, i) };
            assert_eq!(!hw(b"123456789", !0), 0xe306_9283);
            // Every length's tail (eight, four, two, one bytes) agrees with the table.
            let data: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(37)).collect();
            for len in 0..data.len() {
                assert_eq!(hw(&data[..len], 7), crc32c_table(&data[..len], 7), "{len}");
            }
        }
    }

    #[test]
    fn jhash_gives_lookup3s_published_values() {
        // lookup3.c's own self-test values.
        assert_eq!(jhash(b"", 0), 0xdead_beef);
        assert_eq!(jhash(b"", 0xdead_beef), 0xbd5b_7dde);
        assert_eq!(jhash(b"Four score and seven years ago", 0), 0x1777_0551);
        assert_eq!(jhash(b"Four score and seven years ago", 1), 0xcd62_8161);
    }

    /// lookup3's tail as its C code reads it: the last 1 to 12 bytes into three
    /// little-endian words, zero-padded.
    #[test]
    fn jhash_reads_every_tail_length_as_lookup3() {
        let data: Vec<u8> = (0u8..80).map(|i| i.wrapping_mul(91) ^ 0x5a).collect();
        for len in 1..=data.len() {
            let key = &data[..len];
            let whole = (len - 1) / 12;
            let mut padded = [0u8; 12];
            padded[..len - whole * 12].copy_from_slice(&key[whole * 12..]);
            let start = 0xdead_beef_u32.wrapping_add(len as u32).wrapping_add(3);
            let (mut a, mut b, mut c) = (start, start, start);
            for block in key.chunks(12).take(whole).chain([&padded[..]]) {
                let w = |i: usize| {
                    u32::from_le_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]])
                };
                a = a.wrapping_add(w(0));
                b = b.wrapping_add(w(4));
                c = c.wrapping_add(w(8));
                if block.as_ptr() == padded.as_ptr() {
                    final_mix(&mut a, &mut b, &mut c);
                } else {
                    mix(&mut a, &mut b, &mut c);
                }
            }
            assert_eq!(jhash(key, 3), c, "{len} bytes");
        }
    }

    #[test]
    fn le_word_and_tail_word_read_every_length_as_little_endian_zero_padded() {
        let bytes: Vec<u8> = (0x11..=0xbb).step_by(0x11).collect();
        let le = |b: &[u8]| b.iter().rev().fold(0u64, |w, b| w << 8 | u64::from(*b));
        for n in 0..=8 {
            assert_eq!(le_word(&bytes[..n]), le(&bytes[..n]), "{n} bytes");
            // The last n bytes of slices shorter and longer than a word.
            for len in n..=bytes.len() {
                let tail = &bytes[len - n..len];
                assert_eq!(tail_word(&bytes[..len], n), le(tail), "{n} of {len}");
            }
        }
    }

    #[test]
    fn an_unknown_id_is_refused() {
        assert_eq!(
            HashFunction::from_id("t", 1).ok(),
            Some(HashFunction::Crc32c)
        );
        assert!(matches!(
            HashFunction::from_id("t", 9),
            Err(HashError::UnknownFunction { id: 9, .. })
        ));
    }
}
