//! Mempools: fixed-size objects in one memzone, the free ones in a ring, with a cache per
//! lcore in shared memory in front of it, as DPDK's `rte_mempool`.
//!
//! A cache belongs to an lcore, and an lcore to one thread of one process at a time (the
//! lcore table enforces it), so a cache needs no lock. Threads the EAL did not start have
//! no lcore id and go straight to the ring. When a process dies, the primary returns what
//! its lcores' caches held to the ring ([`flush_caches_of`]).
//!
//! No object crosses a page of the group's memory (unless it is larger than a page), as in
//! DPDK when objects must be IOVA-contiguous: with `--iova-mode=pa` the next page is
//! elsewhere in physical memory, and devices behind an IOMMU may translate each buffer
//! once (QEMU's igb drops a TX frame whose buffer spans two IOMMU pages).

mod cache;
mod journal;
mod layout;
mod pins;

pub use cache::LocalCache;
pub use pins::{any_pin, DeadPin};

use crate::lcore::MAX_LCORE;
use crate::memzone::MemzoneFlags;
use crate::ring::{Ring, RingFlags};
use crate::shm::{ShmName, ShmSafe};
use crate::{Error, Result};
use crossbeam_utils::CachePadded;
use journal::{Side, SideLog, NO_LCORE};
use layout::{align_up, ObjLayout};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

/// Largest per-lcore cache, as DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`.
pub const CACHE_MAX_SIZE: u32 = 512;
/// Longest mempool name: memzone names less the `RG_MP_` prefix of its ring.
pub const NAME_MAX: usize = ShmName::CAPACITY - 1 - 6;
/// The one mempool driver: free objects in a multi-producer multi-consumer ring. Recorded
/// as a fixed id, never as a registration index (ARCHITECTURE.md, rule 2).
pub const OPS_RING_MP_MC: u32 = 1;

/// A pool's header at the start of its memzone, read by every process.
#[repr(C)]
pub struct MempoolHeader {
    name: ShmName,
    ops_id: u32,
    size: u32,
    elt_size: u32,
    cache_size: u32,
    flush_thresh: u32,
    cache_slots: u32,
    ring: u64,
    objs: ObjLayout,
    caches_start: u64,
    cache_stride: u64,
    /// Written on every move to or from the ring: each on a cache line of its own, away
    /// from the words every get and put reads.
    puts: CachePadded<SideLog>,
    gets: CachePadded<SideLog>,
}

// SAFETY: repr(C) integers, atomics and addresses inside the group's range.
unsafe impl ShmSafe for MempoolHeader {}

/// A handle to a mempool, valid in every process of the group.
#[derive(Clone, Copy)]
pub struct Mempool {
    hdr: NonNull<MempoolHeader>,
    ring: Ring,
}

// SAFETY: the ring is thread-safe; a cache is only touched by the thread holding its lcore.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mempool({}, {} of {} in use)",
            self.name(),
            self.in_use(),
            self.size()
        )
    }
}

impl Mempool {
    /// Creates a pool of `n` objects of `elt_size` bytes with per-lcore caches of
    /// `cache_size` objects (0: no cache). `obj_init` runs once per object, in this process.
    pub fn create(
        name: &str,
        n: u32,
        elt_size: u32,
        cache_size: u32,
        mut obj_init: impl FnMut(NonNull<u8>, u32),
    ) -> Result<Mempool> {
        if name.len() > NAME_MAX {
            return Err(Error::BadName {
                name: name.into(),
                why: "mempool names have at most 25 bytes",
            });
        }
        if n == 0 || elt_size == 0 {
            return Err(Error::Mempool(format!(
                "mempool '{name}': needs at least one object of at least one byte"
            )));
        }
        if cache_size > CACHE_MAX_SIZE || cache_size > n {
            return Err(Error::Mempool(format!(
                "mempool '{name}': cache size {cache_size} is above {} (the most, and at most the pool size {n})",
                CACHE_MAX_SIZE
            )));
        }
        let eal = crate::eal()?;
        let ring_count = (n + 1)
            .checked_next_power_of_two()
            .ok_or_else(|| Error::Mempool(format!("mempool '{name}': {n} objects is too many")))?;
        let ring = Ring::create(&format!("MP_{name}"), ring_count, RingFlags::empty())?;
        let elt = align_up(elt_size as u64, 64);
        let cache_slots = cache_size * 2;
        let stride = align_up(cache::CACHE_HEADER_BYTES + 8 * cache_slots as u64, 64);
        let hdr_len = align_up(std::mem::size_of::<MempoolHeader>() as u64, 64);
        let caches_len = if cache_size > 0 {
            stride * MAX_LCORE as u64
        } else {
            0
        };
        let page = eal.config().page_size;
        let total = hdr_len + caches_len + ObjLayout::span_bound(n as u64, elt, page);
        let mz = match eal.memzone_reserve(&format!("MP_{name}"), total, 64, MemzoneFlags::empty())
        {
            Ok(mz) => mz,
            Err(e) => {
                let _ = ring.free();
                return Err(e);
            }
        };
        let base = mz.addr();
        let hdr = base as *mut MempoolHeader;
        // SAFETY: the memzone is fresh, zeroed (so every cache's len is 0), aligned and long
        // enough for the header, the caches and the objects laid out above.
        unsafe {
            hdr.write(MempoolHeader {
                name: ShmName::new(name)?,
                ops_id: OPS_RING_MP_MC,
                size: n,
                elt_size: elt as u32,
                cache_size,
                flush_thresh: cache_size + cache_size / 2,
                cache_slots,
                ring: ring.addr(),
                objs: ObjLayout::new(base + hdr_len + caches_len, elt, page),
                caches_start: base + hdr_len,
                cache_stride: stride,
                puts: CachePadded::new(SideLog::default()),
                gets: CachePadded::new(SideLog::default()),
            });
        }
        let mp = Mempool {
            hdr: NonNull::new(hdr).ok_or_else(|| Error::Mempool("null pool".into()))?,
            ring,
        };
        let objs = mp.hdr().objs;
        let mut batch = Vec::with_capacity(64);
        for i in 0..n {
            let addr = objs.addr(i as u64);
            if let Some(p) = NonNull::new(addr as *mut u8) {
                obj_init(p, i);
            }
            batch.push(addr as usize);
            if batch.len() == 64 || i == n - 1 {
                ring.sp_enqueue_bulk(&batch);
                batch.clear();
            }
        }
        Ok(mp)
    }

    /// Finds a pool created by any process of the group.
    pub fn lookup(name: &str) -> Result<Mempool> {
        let mz = crate::eal()?
            .memzone_lookup(&format!("MP_{name}"))
            .map_err(|_| {
                Error::Mempool(format!(
                    "no mempool named '{name}' in this group: has the primary created it yet?"
                ))
            })?;
        Self::from_memzone_addr(mz.addr())
    }

    fn from_memzone_addr(addr: u64) -> Result<Mempool> {
        // SAFETY: the memzone named MP_<name> holds a header written by create.
        unsafe { Mempool::from_addr(addr) }
    }

    /// The address of the pool's header, the same in every process of the group; for
    /// objects that record their pool in shared memory (mbufs).
    pub fn addr(&self) -> u64 {
        self.hdr.as_ptr() as u64
    }

    /// A handle to the pool whose header is at `addr`, without a name look-up.
    ///
    /// # Safety
    /// `addr` was returned by [`Mempool::addr`] of a pool of this group that still exists.
    pub unsafe fn from_addr(addr: u64) -> Result<Mempool> {
        let hdr = NonNull::new(addr as *mut MempoolHeader)
            .ok_or_else(|| Error::Mempool("null pool".into()))?;
        // SAFETY: the caller guarantees a live header written by create.
        let h = unsafe { hdr.as_ref() };
        if h.ops_id != OPS_RING_MP_MC {
            return Err(Error::Mempool(format!(
                "mempool '{}' uses driver id {}, which this binary does not have",
                h.name.as_str(),
                h.ops_id
            )));
        }
        // SAFETY: create recorded the address of the pool's own ring, which lives as long.
        let ring = unsafe { Ring::from_addr(h.ring) }
            .ok_or_else(|| Error::Mempool("pool without ring".into()))?;
        Ok(Mempool { hdr, ring })
    }

    /// Frees the pool; every object must be back and every process done with it.
    pub fn free(self) -> Result<()> {
        let name = self.name().to_string();
        let eal = crate::eal()?;
        self.ring.free()?;
        eal.memzone_free(&format!("MP_{name}"))
    }

    #[inline(always)]
    fn hdr(&self) -> &MempoolHeader {
        // SAFETY: written by create, alive as long as the pool.
        unsafe { self.hdr.as_ref() }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        self.hdr().name.as_str()
    }
    /// Number of objects in the pool.
    pub fn size(&self) -> u32 {
        self.hdr().size
    }
    /// Bytes per object (rounded up to a cache line).
    pub fn elt_size(&self) -> u32 {
        self.hdr().elt_size
    }
    /// Objects a per-lcore cache keeps (0: no caches).
    pub fn cache_size(&self) -> u32 {
        self.hdr().cache_size
    }

    /// Free objects held in the lcore caches.
    pub fn cached(&self) -> u32 {
        if self.cache_size() == 0 {
            return 0;
        }
        (0..MAX_LCORE as u32)
            .map(|l| self.cache(l).0.len.load(Ordering::Relaxed))
            .sum()
    }

    /// Objects free now: in the ring and in every cache.
    pub fn available(&self) -> u32 {
        self.ring.count() + self.cached()
    }

    /// Objects taken and not yet returned.
    pub fn in_use(&self) -> u32 {
        self.size().saturating_sub(self.available())
    }

    /// Takes `objs.len()` objects, all or none.
    #[inline]
    pub fn get_bulk(&self, objs: &mut [usize]) -> Result<(), Empty> {
        self.get_bulk_with(objs, |_| {})
    }

    /// As [`get_bulk`](Self::get_bulk), handing the objects to `prepare` before they leave
    /// the lcore's cache (see [`LocalCache::get_bulk_with`]); without a cache, after the
    /// get.
    #[inline]
    pub fn get_bulk_with(
        &self,
        objs: &mut [usize],
        prepare: impl FnOnce(&[usize]),
    ) -> Result<(), Empty> {
        match self.local_cache() {
            Some(cache) => cache.get_bulk_with(objs, prepare),
            None => {
                self.get_from_ring(objs)?;
                prepare(objs);
                Ok(())
            }
        }
    }

    fn get_from_ring(&self, objs: &mut [usize]) -> Result<(), Empty> {
        if self.get_logged(objs, NO_LCORE, 0, |_| {}) == objs.len() {
            Ok(())
        } else {
            Err(Empty)
        }
    }

    /// Returns objects to the pool.
    #[inline]
    pub fn put_bulk(&self, objs: &[usize]) {
        match self.local_cache() {
            Some(cache) => cache.put_bulk(objs),
            None => self.put_to_ring(objs),
        }
    }

    fn put_to_ring(&self, objs: &[usize]) {
        self.debug_assert_owns(objs);
        self.put_logged(objs, NO_LCORE, 0, || {});
    }

    /// Takes one object.
    #[inline]
    pub fn get(&self) -> Option<NonNull<u8>> {
        let mut o = [0usize];
        self.get_bulk(&mut o).ok()?;
        NonNull::new(o[0] as *mut u8)
    }

    /// Returns one object.
    #[inline]
    pub fn put(&self, obj: NonNull<u8>) {
        self.put_bulk(&[obj.as_ptr() as usize]);
    }

    /// In debug builds, panics on an object that is not one of this pool's: a put of a
    /// stranger would hand out memory the pool does not own.
    #[inline(always)]
    fn debug_assert_owns(&self, objs: &[usize]) {
        debug_assert!(
            objs.iter().all(|o| self.contains(*o)),
            "object not from pool {}",
            self.name()
        );
    }

    /// The start of every object of the pool, free or in use.
    pub fn objects(&self) -> impl Iterator<Item = usize> + '_ {
        let h = self.hdr();
        (0..h.size as u64).map(move |i| h.objs.addr(i) as usize)
    }

    /// The addresses the pool's objects lie in, first object's start to last one's end: one
    /// virtually contiguous span of the group's memory (a memzone), which a kernel may be
    /// given as a whole (an AF_XDP UMEM).
    pub fn object_span(&self) -> std::ops::Range<usize> {
        let h = self.hdr();
        let last = h.objs.addr(h.size.saturating_sub(1) as u64) as usize;
        h.objs.addr(0) as usize..last + h.elt_size as usize
    }

    /// The objects the lcore caches hold: exact for the caches of lcores whose threads are
    /// gone, a snapshot for the others.
    pub fn cached_objects(&self) -> Vec<usize> {
        let h = self.hdr();
        if h.cache_size == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for l in 0..MAX_LCORE as u32 {
            let (ch, slots) = self.cache(l);
            let len = (ch.len.load(Ordering::Acquire)).min(h.cache_slots) as usize;
            // SAFETY: len <= cache_slots: inside the cache's slot array. A slot a live
            // thread rewrites meanwhile reads as some object of the pool or a stale one.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(slots, len) });
        }
        out
    }

    /// Whether `addr` is the start of one of this pool's objects.
    pub fn contains(&self, addr: usize) -> bool {
        let h = self.hdr();
        h.objs.index(addr as u64).is_some_and(|i| i < h.size as u64)
    }

    /// Returns the objects cached for `lcore` to the ring. Only for an lcore whose thread
    /// is gone (its process died) or idle.
    pub fn flush_cache(&self, lcore: u32) {
        if self.cache_size() == 0 || lcore as usize >= MAX_LCORE {
            return;
        }
        let (ch, slots) = self.cache(lcore);
        // The count is read once a get or put this lcore's process died in is repaired:
        // until then it may leave out objects taken from the ring, or cover objects
        // already back in it.
        self.lock_side(Side::Get);
        self.unlock_side(Side::Get);
        self.lock_side(Side::Put);
        let len = ch.len.load(Ordering::Acquire) as usize;
        // SAFETY: len <= cache_slots; the owner thread is gone, so nobody else touches it.
        let objs = unsafe { std::slice::from_raw_parts(slots, len) };
        self.put_locked(objs, lcore, 0, || ch.len.store(0, Ordering::Release));
        self.unlock_side(Side::Put);
        ch.pinned.store(0, Ordering::Release);
    }
}

/// Returned by [`Mempool::get_bulk`] when the pool has fewer free objects than asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mempool exhausted")]
pub struct Empty;

/// Every mempool of the group, found through their memzones.
pub fn list() -> Result<Vec<Mempool>> {
    let eal = crate::eal()?;
    Ok(eal
        .memzone_list()
        .into_iter()
        .filter(|mz| mz.name().starts_with("MP_"))
        .filter_map(|mz| Mempool::from_memzone_addr(mz.addr()).ok())
        .collect())
}

/// Returns to their rings whatever the caches of `lcores` hold, in every mempool.
pub fn flush_caches_of(lcores: &[u32]) {
    for mp in list().unwrap_or_default() {
        for l in lcores {
            mp.flush_cache(*l);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_model;
