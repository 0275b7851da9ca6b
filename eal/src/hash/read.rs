//! Lookups: no lock, no store, from any process, while one writer adds and deletes.
//!
//! A reader searches the key's primary bucket, then its secondary bucket and that bucket's
//! chain of extendable buckets. Two things can make a search wrong, and each is caught by a
//! counter the reader reads before and after:
//! - a key moved between its two buckets (a cuckoo move) while the search passed them:
//!   the writer moves the table's change counter between writing the key's new entry and
//!   clearing its old one, so a search that missed retries when the counter moved;
//! - a key slot reused for another key while the reader compared it: the writer makes the
//!   slot's version odd before it writes the next key there and gives it a new even one
//!   after, so a reader that matched a key retries when the version was odd or moved.
//!
//! Neither waits for the writer: a retry searches again at once. A writer that died leaves
//! both counters still, so readers of other processes are never stopped by its death.

use super::function::tail_word;
use super::layout::{Bucket, Layout, BUCKET_ENTRIES};
use super::LOOKUP_BULK_MAX;
use crate::sync::{fence, AtomicU64, Ordering};

/// What a search of one bucket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The key, with its data and slot.
    Hit { data: u64, idx: u32 },
    /// Not in this bucket.
    Miss,
    /// A slot that matched was being rewritten: search again.
    Retry,
}

/// A key in the form its key slot holds: its whole 8-byte words, and its last bytes as a
/// zero-padded word, made once per lookup rather than for each slot compared; a writer
/// fills a slot from the same form ([`SearchKey::words`]).
#[derive(Clone, Copy)]
pub(crate) struct SearchKey<'k> {
    /// The key's first `8 * (len / 8)` bytes.
    whole: &'k [u8],
    /// The rest, if any, as a slot stores it.
    tail: Option<u64>,
}

impl<'k> SearchKey<'k> {
    #[inline(always)]
    pub(crate) fn new(key: &'k [u8]) -> Self {
        let (whole, rest) = key.split_at(key.len() & !7);
        SearchKey {
            whole,
            tail: (!rest.is_empty()).then(|| tail_word(key, rest.len())),
        }
    }

    /// The key's whole words, little-endian.
    #[inline(always)]
    fn whole_words(&self) -> impl Iterator<Item = u64> + '_ {
        self.whole
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
    }

    /// The words a key slot holds for this key, in order.
    pub(crate) fn words(&self) -> impl Iterator<Item = u64> + '_ {
        self.whole_words().chain(self.tail)
    }

    /// Whether key slot words `words` hold this key. Every caller has checked the key's
    /// length against the table's, so `words` are as many as the key's: not checked again
    /// here, in the compare of every slot whose signature matched.
    #[inline(always)]
    pub(crate) fn matches(&self, words: &[AtomicU64]) -> bool {
        let n = self.whole.len() / 8;
        debug_assert_eq!(words.len(), n + usize::from(self.tail.is_some()));
        let Some((head, last)) = words.split_at_checked(n) else {
            return false;
        };
        self.whole_words()
            .zip(head)
            .all(|(k, w)| k == w.load(Ordering::Relaxed))
            && match (self.tail, last.first()) {
                (Some(t), Some(w)) => t == w.load(Ordering::Relaxed),
                _ => true,
            }
    }
}

impl Layout {
    /// Searches bucket `b` for `key` under signature `sig`.
    #[inline(always)]
    pub(crate) fn search_bucket(&self, b: &Bucket, sig: u16, key: &SearchKey) -> Found {
        self.search_lanes(b, b.sig_matches(sig), key)
    }

    /// Searches the lanes `hits` of bucket `b` (those whose signature matched) for `key`.
    #[inline(always)]
    fn search_lanes(&self, b: &Bucket, mut hits: u8, key: &SearchKey) -> Found {
        while hits != 0 {
            let lane = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            // Acquire: the slot's key was written before this entry named it.
            let idx = b.key_idx[lane % BUCKET_ENTRIES].load(Ordering::Acquire);
            let Some(slot) = self.slot(idx) else { continue };
            let version = slot.version.load(Ordering::Acquire);
            if !key.matches(slot.key) {
                continue;
            }
            let data = slot.data.load(Ordering::Acquire);
            fence(Ordering::Acquire);
            if version & 1 != 0 || slot.version.load(Ordering::Relaxed) != version {
                return Found::Retry;
            }
            return Found::Hit { data, idx };
        }
        Found::Miss
    }

    /// Searches the primary bucket, then the secondary one and its chain, once.
    #[inline(always)]
    fn search_once(&self, key: &SearchKey, hash: u32) -> Found {
        let sig = short_sig(hash);
        let prim = hash & self.bucket_mask;
        self.prefetch_bucket(alt_bucket(prim, sig));
        match self.search_bucket(self.bucket(prim), sig, key) {
            Found::Miss => {}
            found => return found,
        }
        self.search_chain(alt_bucket(prim, sig), sig, key)
    }

    /// Searches main bucket `head` and the extendable buckets chained to it.
    #[inline(always)]
    pub(crate) fn search_chain(&self, head: u32, sig: u16, key: &SearchKey) -> Found {
        self.search_from(Some(self.bucket(head)), sig, key)
    }

    /// Searches bucket `b` and the rest of its chain.
    #[inline(always)]
    fn search_from<'a>(&'a self, mut b: Option<&'a Bucket>, sig: u16, key: &SearchKey) -> Found {
        while let Some(bucket) = b {
            match self.search_bucket(bucket, sig, key) {
                Found::Miss => {}
                found => return found,
            }
            b = self.next_in_chain(bucket);
        }
        Found::Miss
    }

    /// The key's data and slot, if present.
    #[inline]
    pub(crate) fn lookup(&self, key: &[u8], hash: u32) -> Option<(u64, u32)> {
        let key = SearchKey::new(key);
        // The first search is not in the loop of the searches again: what the compiler would
        // take out of that loop would run before every first search.
        self.search_counted(&key, hash)
            .unwrap_or_else(|| self.lookup_again(&key, hash))
    }

    /// [`Layout::lookup`] after a search that a writer's change made void: searches until
    /// one counts.
    #[cold]
    #[inline(never)]
    fn lookup_again(&self, key: &SearchKey, hash: u32) -> Option<(u64, u32)> {
        loop {
            // In a loom model the writer runs only when the reader gives way.
            #[cfg(all(test, loom))]
            crate::sync::yield_now();
            if let Some(found) = self.search_counted(key, hash) {
                return found;
            }
        }
    }

    /// One search, if it counts: a hit always does, a miss only if no key moved meanwhile
    /// (the table's change counter did not), a slot rewritten under it never.
    #[inline(always)]
    fn search_counted(&self, key: &SearchKey, hash: u32) -> Option<Option<(u64, u32)>> {
        let change = &self.header().change;
        let before = change.load(Ordering::Acquire);
        match self.search_once(key, hash) {
            Found::Hit { data, idx } => Some(Some((data, idx))),
            Found::Retry => None,
            Found::Miss => {
                fence(Ordering::Acquire);
                (change.load(Ordering::Relaxed) == before).then_some(None)
            }
        }
    }

    /// Looks up every key of `keys` (at most 64) with their hashes, handing each hit to
    /// `found` (its index in `keys`, its data, its slot); returns the hits as bit i for key
    /// i. The caller has fetched both buckets of every key ([`Layout::prefetch_buckets`]).
    #[inline(always)]
    pub(crate) fn lookup_bulk(
        &self,
        keys: &[&[u8]],
        hashes: &[u32],
        mut found: impl FnMut(usize, u64, u32),
    ) -> u64 {
        let mut hits = 0;
        // The first search is not in the loop of the searches again, as in `lookup`; it
        // has no hits to pass over either.
        if !self.bulk_search::<true>(keys, hashes, &mut hits, &mut found) {
            self.lookup_bulk_again(keys, hashes, &mut hits, &mut found);
        }
        hits
    }

    /// [`Layout::lookup_bulk`] after a search that a writer's change made void: searches
    /// the keys not found yet until a search counts.
    #[cold]
    #[inline(never)]
    fn lookup_bulk_again(
        &self,
        keys: &[&[u8]],
        hashes: &[u32],
        hits: &mut u64,
        found: &mut impl FnMut(usize, u64, u32),
    ) {
        loop {
            #[cfg(all(test, loom))]
            crate::sync::yield_now();
            if self.bulk_search::<false>(keys, hashes, hits, found) {
                return;
            }
        }
    }

    /// One search of the keys not in `hits` (all of them when `FIRST`), adding the keys it
    /// finds to `hits`; returns whether its misses count (no key moved meanwhile, no slot
    /// was rewritten under it). A first pass matches the signatures of both buckets of
    /// every key and fetches the key slot of the first match, a second compares keys, from
    /// the matches the first pass found.
    #[inline(always)]
    fn bulk_search<const FIRST: bool>(
        &self,
        keys: &[&[u8]],
        hashes: &[u32],
        hits: &mut u64,
        found: &mut impl FnMut(usize, u64, u32),
    ) -> bool {
        let n = keys.len();
        let change = &self.header().change;
        let mut prim_hits = [0u8; LOOKUP_BULK_MAX];
        let mut sec_hits = [0u8; LOOKUP_BULK_MAX];
        let before = change.load(Ordering::Acquire);
        for (i, &h) in hashes[..n].iter().enumerate() {
            if !FIRST && *hits & (1 << i) != 0 {
                continue;
            }
            let sig = short_sig(h);
            let prim = h & self.bucket_mask;
            let (pb, sb) = (self.bucket(prim), self.bucket(alt_bucket(prim, sig)));
            let (pm, sm) = (pb.sig_matches(sig), sb.sig_matches(sig));
            (prim_hits[i], sec_hits[i]) = (pm, sm);
            // The slot of the first match, if any.
            if pm != 0 {
                self.prefetch_slot(
                    pb.key_idx[pm.trailing_zeros() as usize % BUCKET_ENTRIES]
                        .load(Ordering::Relaxed),
                );
            } else if sm != 0 {
                self.prefetch_slot(
                    sb.key_idx[sm.trailing_zeros() as usize % BUCKET_ENTRIES]
                        .load(Ordering::Relaxed),
                );
            }
        }
        let mut retry = false;
        for i in 0..n {
            if !FIRST && *hits & (1 << i) != 0 {
                continue;
            }
            let (key, h) = (SearchKey::new(keys[i]), hashes[i]);
            let prim = h & self.bucket_mask;
            let mut r = self.search_lanes(self.bucket(prim), prim_hits[i], &key);
            if r == Found::Miss {
                let sig = short_sig(h);
                let sb = self.bucket(alt_bucket(prim, sig));
                r = self.search_lanes(sb, sec_hits[i], &key);
                if r == Found::Miss {
                    r = self.search_from(self.next_in_chain(sb), sig, &key);
                }
            }
            match r {
                Found::Hit { data, idx } => {
                    found(i, data, idx);
                    *hits |= 1 << i;
                }
                Found::Retry => retry = true,
                Found::Miss => {}
            }
        }
        fence(Ordering::Acquire);
        // Misses count only if no key moved meanwhile; hits stand.
        !retry && change.load(Ordering::Relaxed) == before
    }
}

impl Layout {
    /// Brings both buckets of a key of hash `hash` towards this core.
    #[inline(always)]
    pub(crate) fn prefetch_buckets(&self, hash: u32) {
        let prim = hash & self.bucket_mask;
        self.prefetch_bucket(prim);
        self.prefetch_bucket(alt_bucket(prim, short_sig(hash)));
    }
}

/// The signature kept in a bucket: the hash's upper half, as DPDK's.
#[inline(always)]
pub(crate) fn short_sig(hash: u32) -> u16 {
    (hash >> 16) as u16
}

/// The other bucket of a key in bucket `b` with signature `sig` (unmasked: the bucket
/// accessors mask). Its own inverse, so a key's two buckets name each other.
#[inline(always)]
pub(crate) fn alt_bucket(b: u32, sig: u16) -> u32 {
    b ^ u32::from(sig)
}
