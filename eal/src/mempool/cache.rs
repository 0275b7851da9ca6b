//! The per-lcore cache in front of a pool's ring: a stack of free objects that one lcore's
//! thread gets from and puts to without a lock, refilled from and flushed to the ring.

use super::{Empty, Mempool};
use crate::lcore;
use crate::sync::{AtomicU32, Ordering};
use std::marker::PhantomData;

/// One lcore's cache: `len`, `pinned`, then `cache_slots` object addresses.
#[repr(C)]
pub(super) struct CacheHeader {
    pub(super) len: AtomicU32,
    /// How many of the top objects the lcore's thread put while something in shared memory
    /// still names them (see [`LocalCache::put_pinned`]); 0 almost always.
    pub(super) pinned: AtomicU32,
}

/// Bytes before a cache's slots (8; more in the loom models' build, whose atomics are
/// larger).
pub(super) const CACHE_HEADER_BYTES: u64 = std::mem::size_of::<CacheHeader>() as u64;

/// One lcore's cache of a pool, held by that lcore's thread: see [`Mempool::local_cache`].
/// A stack of free objects: a get that finds too few refills it from the ring up to the
/// pool's cache size (plus what it takes), a put that fills it to `flush_thresh` sends all
/// but the cache size back.
pub struct LocalCache<'a> {
    pub(super) pool: &'a Mempool,
    lcore: u32,
    len: &'a AtomicU32,
    pub(super) pinned: &'a AtomicU32,
    slots: *mut usize,
    flush_thresh: usize,
    /// Not Send: the cache belongs to the lcore of the thread that looked it up.
    _this_thread: PhantomData<*mut ()>,
}

impl LocalCache<'_> {
    /// Takes `objs.len()` objects, all or none.
    #[inline(always)]
    pub fn get_bulk(&self, objs: &mut [usize]) -> Result<(), Empty> {
        self.get_bulk_with(objs, |_| {})
    }

    /// As [`get_bulk`](Self::get_bulk), handing the objects to `prepare` while the cache
    /// still counts them (objects the cache serves): a process killed inside `prepare`
    /// leaves them free in its cache, where whoever empties it finds them. An object the
    /// ring serves directly (a get larger than the cache size, or one the refill could
    /// not cover) is prepared after its get.
    #[inline(always)]
    pub fn get_bulk_with(
        &self,
        objs: &mut [usize],
        prepare: impl FnOnce(&[usize]),
    ) -> Result<(), Empty> {
        let mut len = self.len.load(Ordering::Relaxed) as usize;
        if objs.len() > len {
            match self
                .pool
                .refill(self.lcore, self.len, self.slots, objs.len())
            {
                Some(filled) => len = filled,
                None => {
                    self.pool.get_from_ring(objs)?;
                    prepare(objs);
                    return Ok(());
                }
            }
        }
        // SAFETY: n <= len <= cache_slots: the cache holds them.
        unsafe { take_from_cache(self.len, self.slots, len, objs, prepare) };
        Ok(())
    }

    /// Returns objects to the pool.
    #[inline(always)]
    pub fn put_bulk(&self, objs: &[usize]) {
        let n = objs.len();
        let len = self.len.load(Ordering::Relaxed) as usize;
        if len + n >= self.flush_thresh {
            return self
                .pool
                .put_and_flush(self.lcore, self.len, self.slots, objs);
        }
        self.pool.debug_assert_owns(objs);
        // SAFETY: len + n < flush_thresh <= cache_slots; the cache is this thread's alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.slots.add(len), n) };
        copy_objects(dst, objs);
        // The slots as one store: nobody reads them before the count covers them.
        crate::store_point!("mempool.cache.slots");
        // Release: no compiler may move the copy after the count. A primary flushing the
        // cache of a process that died here must find the new objects in every slot the
        // count covers, never what the slots held before.
        self.len.store((len + n) as u32, Ordering::Release);
        crate::store_point!("mempool.cache.len");
    }
}

impl Mempool {
    /// The cache of `lcore`: its header and its slots.
    #[inline(always)]
    pub(super) fn cache(&self, lcore: u32) -> (&CacheHeader, *mut usize) {
        let h = self.hdr();
        let at = h.caches_start + lcore as u64 * h.cache_stride;
        // SAFETY: lcore < MAX_LCORE and the caches area holds MAX_LCORE strides when
        // cache_size > 0 (callers check); the slots follow the header.
        unsafe {
            (
                &*(at as *const CacheHeader),
                (at + CACHE_HEADER_BYTES) as *mut usize,
            )
        }
    }

    /// The calling lcore's cache of this pool, found once for many calls, as DPDK's
    /// `rte_mempool_default_cache` is passed to `rte_mempool_generic_get` and `_put`.
    /// [`get_bulk`](Self::get_bulk) and [`put_bulk`](Self::put_bulk) look it up on every
    /// call. `None` for a pool without caches or a thread the EAL did not start.
    #[inline]
    pub fn local_cache(&self) -> Option<LocalCache<'_>> {
        if self.hdr().cache_size == 0 {
            return None;
        }
        Some(self.lcore_cache(lcore::current()?))
    }

    /// The cache of `lcore`, which the calling thread holds, in a pool with caches.
    pub(super) fn lcore_cache(&self, lcore: u32) -> LocalCache<'_> {
        let (ch, slots) = self.cache(lcore);
        LocalCache {
            pool: self,
            lcore,
            len: &ch.len,
            pinned: &ch.pinned,
            slots,
            flush_thresh: self.hdr().flush_thresh as usize,
            _this_thread: PhantomData,
        }
    }

    /// Refills the lcore cache (its count, its slots) for a get of `n` objects it cannot
    /// serve as it is: to `cache_size` plus `n`. Returns the cache's new count, or `None`
    /// when the get must go to the ring (`n` above the cache size, or the ring short).
    /// Out of line, with its arguments in registers, so that the common case inlines into
    /// the caller's loop.
    #[cold]
    #[inline(never)]
    fn refill(&self, lcore: u32, count: &AtomicU32, slots: *mut usize, n: usize) -> Option<usize> {
        let size = self.hdr().cache_size as usize;
        if n > size {
            return None;
        }
        let from = count.load(Ordering::Relaxed) as usize;
        let want = size + n - from;
        // SAFETY: from + want = size + n <= 2 * size = cache_slots, and only this lcore's
        // thread touches its cache.
        let dst = unsafe { std::slice::from_raw_parts_mut(slots.add(from), want) };
        // The count grows inside the logged get: see repair_move.
        let len = from
            + self.get_logged(dst, lcore, from as u32, |got| {
                count.store((from + got) as u32, Ordering::Release);
                crate::store_point!("mempool.cache.len");
            });
        (len >= n).then_some(len)
    }

    /// A put that fills the lcore cache to its flush threshold: the cache keeps
    /// `cache_size` objects, the new ones on top, and sends the older rest to the ring (so
    /// that what was just put stays in the cache: see [`LocalCache::put_pinned`]); more
    /// than `cache_size` go to the ring directly. Out of line, as `refill`.
    #[cold]
    #[inline(never)]
    fn put_and_flush(&self, lcore: u32, count: &AtomicU32, slots: *mut usize, objs: &[usize]) {
        let (size, n) = (self.hdr().cache_size as usize, objs.len());
        if n > size {
            return self.put_to_ring(objs);
        }
        self.debug_assert_owns(objs);
        let len = count.load(Ordering::Relaxed) as usize;
        // The caller found len + n >= flush_thresh >= size, so len >= size - n (equal only
        // for a cache of one object, whose flush threshold is 1).
        let keep = size - n;
        // SAFETY: keep <= len <= cache_slots.
        let old = unsafe { std::slice::from_raw_parts(slots.add(keep), len - keep) };
        // The count shrinks once the objects are in the ring, inside the logged put: the
        // repair of a put this process died in knows which happened.
        self.put_logged(old, lcore, keep as u32, || {
            count.store(keep as u32, Ordering::Release);
            crate::store_point!("mempool.cache.len");
        });
        // SAFETY: keep + n = size <= cache_slots; the cache is this thread's alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(slots.add(keep), n) };
        copy_objects(dst, objs);
        crate::store_point!("mempool.cache.slots");
        // Release: as in `LocalCache::put_bulk`.
        count.store(size as u32, Ordering::Release);
        crate::store_point!("mempool.cache.len");
    }
}

/// Moves the top `objs.len()` of the `len` objects of a cache (its count, its slots) to
/// `objs`, and hands them to `prepare` before the count drops.
///
/// # Safety
/// `objs.len() <= len <= ` the cache's slots, and the calling thread holds the cache's lcore.
#[inline(always)]
unsafe fn take_from_cache(
    count: &AtomicU32,
    slots: *mut usize,
    len: usize,
    objs: &mut [usize],
    prepare: impl FnOnce(&[usize]),
) {
    let n = objs.len();
    // SAFETY: the caller's promise: slots len - n .. len hold objects only we touch.
    let src = unsafe { std::slice::from_raw_parts(slots.add(len - n), n) };
    copy_objects(objs, src);
    prepare(objs);
    // Release: what `prepare` stored comes before the objects leave the cache (a plain
    // store on x86; it only keeps the compiler from moving it).
    count.store((len - n) as u32, Ordering::Release);
    crate::store_point!("mempool.cache.len");
}

/// Copies `src` to the start of `dst`, four objects a step through pointers: faster than
/// `copy_from_slice` or an iterator for 1 to 32 objects (BENCHMARKS.md, "Mempool object copy").
#[inline(always)]
fn copy_objects(dst: &mut [usize], src: &[usize]) {
    let n = src.len();
    let dst = &mut dst[..n];
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    if n >= 4 {
        let mut k = 0;
        loop {
            // SAFETY: k + 3 < n, and both slices hold n elements (dst was cut to n).
            unsafe { copy4(d, s, k) };
            k += 4;
            if k + 4 > n {
                break;
            }
        }
        if k < n {
            // SAFETY: 4 <= n, so n - 4..n lies in both slices.
            unsafe { copy4(d, s, n - 4) };
        }
    } else if n > 0 {
        let (mid, last) = (n / 2, n - 1);
        // SAFETY: 0 < n < 4: elements 0, n / 2 and n - 1 lie in both slices.
        unsafe {
            *d = *s;
            *d.add(mid) = *s.add(mid);
            *d.add(last) = *s.add(last);
        }
    }
}

/// Copies the four objects from `at` on.
///
/// # Safety
/// `at..at + 4` lies in both `d`'s and `s`'s objects.
#[inline(always)]
unsafe fn copy4(d: *mut usize, s: *const usize, at: usize) {
    // SAFETY: the caller's promise.
    unsafe {
        *d.add(at) = *s.add(at);
        *d.add(at + 1) = *s.add(at + 1);
        *d.add(at + 2) = *s.add(at + 2);
        *d.add(at + 3) = *s.add(at + 3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_objects_copies_every_length() {
        for n in 0..=13usize {
            let src: Vec<usize> = (100..100 + n).collect();
            let mut dst = vec![0usize; n + 2];
            copy_objects(&mut dst, &src);
            let want: Vec<usize> = src.iter().copied().chain([0, 0]).collect();
            assert_eq!(dst, want, "n = {n}");
        }
    }
}
