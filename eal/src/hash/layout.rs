//! Where a table's parts lie in its memzone, and one process's view of them.
//!
//! ```text
//! HashHeader | buckets[num_buckets] | ext buckets[ext_buckets] | key slots[entries + 1]
//!            | free key slots[entries] (u32) | free ext buckets[ext_buckets] (u32)
//! ```
//! A bucket is one cache line: eight 16-bit signatures, eight key slot numbers (0: the
//! entry is empty), and the number of the next extendable bucket of its chain (0: none). A
//! key slot holds a version (odd while an add writes the slot; then even, a value it never
//! had before), the key's data, then the key in 8-byte words, zero-padded. Slot 0 is never
//! used, so that 0 means "no key".

use super::HashError;
use crate::owner::OwnerWord;
use crate::shm::{ShmName, ShmSafe};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::ptr::NonNull;

/// Entries per bucket, as DPDK's `RTE_HASH_BUCKET_ENTRIES`: a set of a bucket's lanes is a
/// byte, bit i for entry i.
pub(crate) const BUCKET_ENTRIES: usize = u8::BITS as usize;
/// Most entries a table may have, as DPDK's `RTE_HASH_ENTRIES_MAX`.
pub const MAX_ENTRIES: u32 = 1 << 30;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: u32 = 256;
/// Written last by `create`: a header without it is not a table (yet). It names the
/// layout: a table of another layout is not opened.
const MAGIC: u32 = 0x4854_4233; // "HTB3"
/// Key slot words before the key: the version, then the data.
pub(crate) const SLOT_HEAD_WORDS: usize = 2;

/// One bucket: see the module documentation.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    /// Eight 16-bit signatures, four to a word, so a reader compares them all in two loads.
    pub(crate) sigs: [AtomicU64; 2],
    /// The key slot of each entry (0: empty). Stored last when an entry is filled.
    pub(crate) key_idx: [AtomicU32; BUCKET_ENTRIES],
    /// 1 + the index (among the extendable buckets) of the next bucket of this chain; 0
    /// ends it.
    pub(crate) next: AtomicU32,
}

// SAFETY: repr(C) atomics only.
unsafe impl ShmSafe for Bucket {}

impl Bucket {
    /// Lanes whose signature is `sig`, as bit i for entry i.
    #[inline(always)]
    pub(crate) fn sig_matches(&self, sig: u16) -> u8 {
        let lo = self.sigs[0].load(Ordering::Relaxed);
        let hi = self.sigs[1].load(Ordering::Relaxed);
        sigs_equal(lo, hi, sig)
    }

    /// Lanes whose entry is empty, as bit i for entry i.
    pub(crate) fn empty_lanes(&self) -> u8 {
        (0..BUCKET_ENTRIES)
            .filter(|i| self.key_idx[*i].load(Ordering::Relaxed) == 0)
            .fold(0, |m, i| m | 1 << i)
    }

    pub(crate) fn sig(&self, lane: usize) -> u16 {
        (self.sigs[lane / 4].load(Ordering::Relaxed) >> (16 * (lane % 4))) as u16
    }

    /// Writes the signature of `lane` (the writer alone stores signatures, so a load and a
    /// store of its word suffice), after every store before it.
    pub(crate) fn set_sig(&self, lane: usize, sig: u16) {
        let word = &self.sigs[lane / 4];
        let shift = 16 * (lane % 4);
        let v = word.load(Ordering::Relaxed) & !(0xffff << shift) | u64::from(sig) << shift;
        word.store(v, Ordering::Release);
    }

    /// Fills `lane` with key slot `idx` under `sig`: the signature first, the slot last, so
    /// a reader that sees the slot sees its key (written before, published by this store).
    /// An entry in use (the old place of a key a cuckoo move has just copied) is emptied
    /// first: no kill leaves a slot named under another key's signature, so every entry
    /// that names a slot is the key's own, and the repair may keep any of a key's two.
    pub(crate) fn fill(&self, lane: usize, sig: u16, idx: u32) {
        if self.key_idx[lane].load(Ordering::Relaxed) != 0 {
            self.key_idx[lane].store(0, Ordering::Release);
            crate::store_point!("hash.entry.clear");
        }
        self.set_sig(lane, sig);
        crate::store_point!("hash.entry.sig");
        self.key_idx[lane].store(idx, Ordering::Release);
    }
}

/// The 16-bit lanes of `lo` (entries 0 to 3) and `hi` (4 to 7) equal to `sig`, as bit i for
/// entry i: one vector compare of the two words once loaded (they are loaded as atomics: a
/// vector load of the bucket would race with a writer's stores).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn sigs_equal(lo: u64, hi: u64, sig: u16) -> u8 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi16, _mm_movemask_epi8, _mm_packs_epi16, _mm_set1_epi16, _mm_set_epi64x,
        _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of every x86_64 CPU; these touch registers only.
    unsafe {
        let sigs = _mm_set_epi64x(hi as i64, lo as i64);
        let equal = _mm_cmpeq_epi16(sigs, _mm_set1_epi16(sig as i16));
        // Each lane, all ones or zero, to a byte, then a bit per byte: eight bits, the
        // packed zeros giving none.
        _mm_movemask_epi8(_mm_packs_epi16(equal, _mm_setzero_si128())) as u8
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn sigs_equal(lo: u64, hi: u64, sig: u16) -> u8 {
    lanes_equal(lo, sig) | lanes_equal(hi, sig) << 4
}

/// The four 16-bit lanes of `word` equal to `sig`, as bits 0 to 3, without vectors. Exact: a
/// lane is zero after the xor only if its low 15 bits add no carry into bit 15 and its bit 15
/// is clear.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn lanes_equal(word: u64, sig: u16) -> u8 {
    const LOW15: u64 = 0x7fff_7fff_7fff_7fff;
    let x = word ^ (u64::from(sig) * 0x0001_0001_0001_0001);
    let zero_high = !((x & LOW15).wrapping_add(LOW15) | x | LOW15);
    // Bit 15 of each lane to bits 0..4: gather with a multiply.
    ((zero_high >> 15).wrapping_mul(0x0001_0002_0004_0008) >> 48) as u8 & 0xf
}

/// What one writer at a time changes, on its own cache lines.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    /// The writers' lock: the thread id of the writer; taken over, with a repair, from one
    /// that died (`write::WriteGuard`).
    pub(crate) lock: OwnerWord,
    /// Key slots on the free stack.
    pub(crate) free_slots: AtomicU32,
    /// Extendable buckets on their free stack.
    pub(crate) free_ext: AtomicU32,
    /// Keys in the table.
    pub(crate) count: AtomicU32,
    /// Versions handed out to filled key slots: a slot filled gets twice the next one.
    pub(crate) versions: AtomicU64,
}

/// The table's header in shared memory: what never changes after `create` on the first
/// lines, the writer's state and the change counter on lines of their own.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct HashHeader {
    pub(crate) name: ShmName,
    pub(crate) magic: AtomicU32,
    pub(crate) function: u32,
    pub(crate) init_val: u32,
    pub(crate) key_len: u32,
    pub(crate) entries: u32,
    pub(crate) num_buckets: u32,
    pub(crate) ext_buckets: u32,
    pub(crate) _reserved: u32,
    pub(crate) writer: CachePadded<WriterState>,
    /// Moved by the writer before an entry leaves a bucket a reader may be searching
    /// (a cuckoo move, a repair); a lookup that missed while it moved searches again.
    pub(crate) change: CachePadded<AtomicU32>,
}

// SAFETY: repr(C); a name, integers, atomics and an owner word (CachePadded only aligns).
unsafe impl ShmSafe for HashHeader {}

/// The sizes a table is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) key_len: u32,
    pub(crate) entries: u32,
    pub(crate) num_buckets: u32,
    pub(crate) ext_buckets: u32,
}

impl Geometry {
    /// DPDK's sizing: buckets enough for `entries` rounded up to a power of two, as many
    /// extendable buckets again when asked for.
    pub(crate) fn new(
        name: &str,
        entries: u32,
        key_len: u32,
        extendable: bool,
    ) -> Result<Self, HashError> {
        let bad = |why: String| HashError::BadParams {
            name: name.into(),
            why,
        };
        if !(BUCKET_ENTRIES as u32..=MAX_ENTRIES).contains(&entries) {
            return Err(bad(format!(
                "entries {entries} is out of range: give {BUCKET_ENTRIES} to {MAX_ENTRIES}"
            )));
        }
        if !(1..=MAX_KEY_LEN).contains(&key_len) {
            return Err(bad(format!(
                "key length {key_len} is out of range: give 1 to {MAX_KEY_LEN} bytes"
            )));
        }
        let num_buckets = entries.next_power_of_two() / BUCKET_ENTRIES as u32;
        Ok(Geometry {
            key_len,
            entries,
            num_buckets,
            ext_buckets: if extendable { num_buckets } else { 0 },
        })
    }

    pub(crate) fn key_words(&self) -> usize {
        (self.key_len as usize).div_ceil(8)
    }

    pub(crate) fn slot_words(&self) -> usize {
        SLOT_HEAD_WORDS + self.key_words()
    }

    /// Byte offsets of the parts after the header, and the total size.
    fn offsets(&self) -> [usize; 6] {
        let buckets = std::mem::size_of::<HashHeader>().next_multiple_of(64);
        let bucket = std::mem::size_of::<Bucket>();
        let ext = buckets + self.num_buckets as usize * bucket;
        let keys = ext + self.ext_buckets as usize * bucket;
        // The sizes of the atomics, not of their integers: loom's are larger.
        let (word, index) = (
            std::mem::size_of::<AtomicU64>(),
            std::mem::size_of::<AtomicU32>(),
        );
        let free_slots = keys + (self.entries as usize + 1) * self.slot_words() * word;
        let free_ext = free_slots + self.entries as usize * index;
        let end = free_ext + self.ext_buckets as usize * index;
        [buckets, ext, keys, free_slots, free_ext, end]
    }

    pub(crate) fn memory_size(&self) -> usize {
        self.offsets()[5]
    }
}

/// One process's view of a table: where its parts are and its sizes, read once from the
/// header. Every accessor masks or checks the index it is given, so a bad value in shared
/// memory cannot make it read outside the table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) hdr: NonNull<HashHeader>,
    buckets: NonNull<Bucket>,
    keys: NonNull<AtomicU64>,
    free_slots: NonNull<AtomicU32>,
    free_ext: NonNull<AtomicU32>,
    pub(crate) geo: Geometry,
    pub(crate) bucket_mask: u32,
    pub(crate) slot_words: usize,
    /// Words of a key slot's key.
    key_words: usize,
}

/// One key slot: see the module documentation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySlot<'a> {
    /// Odd while a writer rewrites the slot.
    pub(crate) version: &'a AtomicU64,
    /// The key's data.
    pub(crate) data: &'a AtomicU64,
    /// The key in 8-byte words, zero-padded.
    pub(crate) key: &'a [AtomicU64],
}

impl Layout {
    /// The parts of a table of geometry `geo` whose header is at `hdr`.
    ///
    /// # Safety
    /// `hdr` points at `geo.memory_size()` bytes, aligned to 64, that stay mapped while
    /// the layout is used.
    pub(crate) unsafe fn new(hdr: NonNull<HashHeader>, geo: Geometry) -> Self {
        let [buckets, _, keys, free_slots, free_ext, _] = geo.offsets();
        let at = |off: usize| {
            // SAFETY: every offset is inside the region the caller vouches for.
            unsafe { hdr.cast::<u8>().add(off) }
        };
        Layout {
            hdr,
            buckets: at(buckets).cast(),
            keys: at(keys).cast(),
            free_slots: at(free_slots).cast(),
            free_ext: at(free_ext).cast(),
            geo,
            bucket_mask: geo.num_buckets - 1,
            slot_words: geo.slot_words(),
            key_words: geo.key_words(),
        }
    }

    /// Writes a fresh header into zeroed memory; the magic last.
    ///
    /// # Safety
    /// As [`Layout::new`], the memory zeroed and used by nobody else yet.
    pub(crate) unsafe fn init(
        mem: NonNull<u8>,
        name: ShmName,
        geo: Geometry,
        function: u32,
        init_val: u32,
    ) -> Self {
        let hdr = mem.cast::<HashHeader>();
        #[cfg(all(test, loom))]
        // SAFETY: as the caller vouches.
        unsafe {
            Layout::new(hdr, geo).zero_atomics()
        };
        // SAFETY: the caller gives us the memory, zeroed, for this table alone.
        unsafe {
            hdr.write(HashHeader {
                name,
                magic: AtomicU32::new(0),
                function,
                init_val,
                key_len: geo.key_len,
                entries: geo.entries,
                num_buckets: geo.num_buckets,
                ext_buckets: geo.ext_buckets,
                _reserved: 0,
                writer: CachePadded::new(WriterState::default()),
                change: CachePadded::new(AtomicU32::new(0)),
            })
        };
        // SAFETY: as above.
        let layout = unsafe { Layout::new(hdr, geo) };
        // Every key slot and extendable bucket starts on its free stack, slot 1 on top.
        for i in 0..geo.entries {
            layout
                .free_slot(i)
                .store(geo.entries - i, Ordering::Relaxed);
        }
        for i in 0..geo.ext_buckets {
            layout
                .free_ext(i)
                .store(geo.ext_buckets - 1 - i, Ordering::Relaxed);
        }
        let w = &layout.header().writer;
        w.free_slots.store(geo.entries, Ordering::Relaxed);
        w.free_ext.store(geo.ext_buckets, Ordering::Relaxed);
        layout.header().magic.store(MAGIC, Ordering::Release);
        layout
    }

    /// Under loom an atomic is an object of the model, which zeroed memory is not: makes
    /// each atomic after the header anew, zero, as zeroed memory holds std's.
    ///
    /// # Safety
    /// As [`Layout::init`].
    #[cfg(all(test, loom))]
    unsafe fn zero_atomics(&self) {
        let geo = self.geo;
        assert!(
            self.keys.is_aligned() && self.free_slots.is_aligned() && self.free_ext.is_aligned(),
            "loom's atomics misaligned in the table's layout"
        );
        // SAFETY: every part lies inside the memory the caller vouches for, aligned (see
        // the assertion), and holds nothing to drop yet.
        unsafe {
            for b in 0..(geo.num_buckets + geo.ext_buckets) as usize {
                self.buckets.add(b).write(Bucket::default());
            }
            for w in 0..(geo.entries as usize + 1) * self.slot_words {
                self.keys.add(w).write(AtomicU64::new(0));
            }
            for i in 0..geo.entries as usize {
                self.free_slots.add(i).write(AtomicU32::new(0));
            }
            for e in 0..geo.ext_buckets as usize {
                self.free_ext.add(e).write(AtomicU32::new(0));
            }
        }
    }

    /// The layout of an existing table at `hdr`, from its header.
    ///
    /// # Safety
    /// `hdr` points at a memzone of `zone_len` bytes, aligned to 64, that stays mapped.
    pub(crate) unsafe fn open(
        hdr: NonNull<HashHeader>,
        zone_len: u64,
        zone: &str,
    ) -> Result<Self, HashError> {
        let broken = || HashError::NotATable(zone.into());
        if (zone_len as usize) < std::mem::size_of::<HashHeader>() {
            return Err(broken());
        }
        // SAFETY: the zone holds at least a header.
        let h = unsafe { hdr.as_ref() };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(broken());
        }
        let geo =
            Geometry::new(zone, h.entries, h.key_len, h.ext_buckets != 0).map_err(|_| broken())?;
        if geo.num_buckets != h.num_buckets || geo.memory_size() as u64 > zone_len {
            return Err(broken());
        }
        // SAFETY: the zone is as large as the geometry needs.
        Ok(unsafe { Layout::new(hdr, geo) })
    }

    #[inline(always)]
    pub(crate) fn header(&self) -> &HashHeader {
        // SAFETY: the header lives as long as the table is mapped (see `new`).
        unsafe { self.hdr.as_ref() }
    }

    /// Bucket `i` of the main table (masked into it).
    #[inline(always)]
    pub(crate) fn bucket(&self, i: u32) -> &Bucket {
        // SAFETY: i & mask < num_buckets: inside the bucket array.
        unsafe { self.buckets.add((i & self.bucket_mask) as usize).as_ref() }
    }

    /// Extendable bucket `e` (0-based), if there is one of that number.
    #[inline(always)]
    pub(crate) fn ext_bucket(&self, e: u32) -> Option<&Bucket> {
        (e < self.geo.ext_buckets).then(|| {
            // SAFETY: the extendable buckets follow the main ones; e is below their count.
            unsafe {
                self.buckets
                    .add(self.geo.num_buckets as usize + e as usize)
                    .as_ref()
            }
        })
    }

    /// The bucket after `b` in its chain: what its `next` names, if it names one.
    #[inline(always)]
    pub(crate) fn next_in_chain(&self, b: &Bucket) -> Option<&Bucket> {
        match b.next.load(Ordering::Acquire) {
            0 => None,
            n => self.ext_bucket(n - 1),
        }
    }

    /// Key slot `idx` (1 to entries), if it is one.
    #[inline(always)]
    pub(crate) fn slot(&self, idx: u32) -> Option<KeySlot<'_>> {
        (idx != 0 && idx <= self.geo.entries).then(|| {
            // SAFETY: slots 0..=entries of slot_words words each follow the buckets: the
            // version, the data, then key_words words of key.
            unsafe {
                let words = self.keys.add(idx as usize * self.slot_words);
                KeySlot {
                    version: words.as_ref(),
                    data: words.add(1).as_ref(),
                    key: std::slice::from_raw_parts(
                        words.add(SLOT_HEAD_WORDS).as_ptr(),
                        self.key_words,
                    ),
                }
            }
        })
    }

    /// Entry `i` of the free key slot stack (masked into range by the caller's count).
    pub(crate) fn free_slot(&self, i: u32) -> &AtomicU32 {
        assert!(
            i < self.geo.entries,
            "free slot stack index {i} out of range"
        );
        // SAFETY: i < entries, the stack's length.
        unsafe { self.free_slots.add(i as usize).as_ref() }
    }

    /// Entry `i` of the free extendable bucket stack.
    pub(crate) fn free_ext(&self, i: u32) -> &AtomicU32 {
        assert!(
            i < self.geo.ext_buckets,
            "free bucket stack index {i} out of range"
        );
        // SAFETY: i < ext_buckets, the stack's length.
        unsafe { self.free_ext.add(i as usize).as_ref() }
    }

    /// Brings bucket `i`'s line towards this core.
    #[inline(always)]
    pub(crate) fn prefetch_bucket(&self, i: u32) {
        prefetch(self.bucket(i) as *const Bucket as *const u8);
    }

    /// Brings key slot `idx`'s first line towards this core. Not checked against the slot
    /// count: a prefetch of an address outside the table is a hint that does nothing.
    #[inline(always)]
    pub(crate) fn prefetch_slot(&self, idx: u32) {
        let slot = self
            .keys
            .as_ptr()
            .wrapping_add(idx as usize * self.slot_words);
        prefetch(slot as *const u8);
    }
}

#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_lanes_match_exactly() {
        let b = Bucket::default();
        for (lane, sig) in [
            0x0000u16, 0x8000, 0x7fff, 0xffff, 0x0001, 0x8001, 0x1234, 0x8000,
        ]
        .into_iter()
        .enumerate()
        {
            b.set_sig(lane, sig);
        }
        assert_eq!(b.sig_matches(0x8000), 0b1000_0010);
        assert_eq!(b.sig_matches(0x0000), 0b0000_0001);
        assert_eq!(b.sig_matches(0xffff), 0b0000_1000);
        assert_eq!(b.sig_matches(0x8001), 0b0010_0000);
        assert_eq!(b.sig_matches(0x4321), 0);
        assert_eq!((b.sig(6), b.sig(7)), (0x1234, 0x8000));
    }

    /// The word-at-a-time compare (other CPUs) gives what the vector one gives.
    #[test]
    fn both_signature_compares_agree() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Signatures from a few values, so that lanes often match.
            let (lo, hi) = (x & 0x0003_0003_0003_0003, x >> 2 & 0x8001_8001_8001_8001);
            for sig in [0, 1, 2, 3, 0x8000, 0x8001, x as u16] {
                let words = lanes_equal(lo, sig) | lanes_equal(hi, sig) << 4;
                assert_eq!(sigs_equal(lo, hi, sig), words, "{lo:x} {hi:x} {sig:x}");
            }
        }
    }

    #[test]
    fn sizes_follow_dpdk() {
        let g = Geometry::new("t", 1 << 20, 16, true).expect("geometry");
        assert_eq!(
            (g.num_buckets, g.ext_buckets, g.slot_words()),
            (1 << 17, 1 << 17, 4)
        );
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert!(Geometry::new("t", 4, 16, false).is_err());
        assert!(Geometry::new("t", 64, 0, false).is_err());
        assert!(Geometry::new("t", 64, MAX_KEY_LEN + 1, false).is_err());
    }
}
