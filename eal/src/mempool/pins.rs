//! Pinned puts: objects put back into the lcore cache while shared state still names them,
//! found by whoever repairs that state after the putter died, before the cache is emptied.

use super::{list, LocalCache, Mempool};
use crate::lcore::MAX_LCORE;
use std::sync::atomic::Ordering;

impl LocalCache<'_> {
    /// Puts `objs` on top of the cache and pins them there until [`unpin`](Self::unpin),
    /// for a caller that still names them in shared memory (a TX ring's slots) and forgets
    /// them in between. The put is their one step back into the pool: should this process
    /// die before the unpin, whoever repairs what named them finds them here
    /// ([`Mempool::dead_pin_holding`]) and forgets them too, before the primary empties
    /// the cache. False, with nothing put, when they would not all stay in the cache.
    pub fn put_pinned(&self, objs: &[usize]) -> bool {
        if objs.len() > self.pool.hdr().cache_size as usize {
            return false;
        }
        // Relaxed: the count's release store in the put publishes the pin with them.
        self.pinned.store(objs.len() as u32, Ordering::Relaxed);
        crate::store_point!("mempool.cache.pinned");
        self.put_bulk(objs);
        crate::fault_point!("mempool.pinned.put");
        true
    }

    /// Ends the pin of [`put_pinned`](Self::put_pinned), after the caller forgot them.
    #[inline]
    pub fn unpin(&self) {
        // Release: the caller's forgetting is seen before the pin is gone.
        self.pinned.store(0, Ordering::Release);
        crate::store_point!("mempool.cache.pinned");
    }
}

impl Mempool {
    /// Whether `lcore`'s cache has objects pinned (see [`LocalCache::put_pinned`]).
    pub fn has_pin(&self, lcore: u32) -> bool {
        self.cache_size() > 0
            && (lcore as usize) < MAX_LCORE
            && self.cache(lcore).0.pinned.load(Ordering::Acquire) != 0
    }

    /// The pinned objects holding `obj` in the cache of an lcore whose thread died (see
    /// [`LocalCache::put_pinned`]): for whoever repairs the shared state that still names
    /// them, before the lcore's cache is emptied. Only while nobody else repairs that state.
    pub fn dead_pin_holding(&self, obj: usize) -> Option<DeadPin> {
        if self.cache_size() == 0 {
            return None;
        }
        (0..MAX_LCORE as u32)
            .filter(|l| self.has_pin(*l) && lcore_orphaned(*l))
            .find_map(|lcore| {
                let (ch, slots) = self.cache(lcore);
                let len = ch.len.load(Ordering::Acquire) as usize;
                let pinned = ch.pinned.load(Ordering::Acquire) as usize;
                let from = len.saturating_sub(pinned);
                // SAFETY: from <= len <= cache_slots; the lcore's thread is gone, and a
                // cache is emptied only after the state naming its pins was repaired.
                let objs = unsafe { std::slice::from_raw_parts(slots.add(from), len - from) };
                objs.contains(&obj).then(|| DeadPin {
                    pool: *self,
                    lcore,
                    objs: objs.to_vec(),
                })
            })
    }
}

/// Objects a thread killed between [`LocalCache::put_pinned`] and
/// [`LocalCache::unpin`] left pinned in its lcore's cache: free, though the state its
/// thread was updating may still name them.
pub struct DeadPin {
    pool: Mempool,
    lcore: u32,
    /// The pinned objects, in the order they were put.
    pub objs: Vec<usize>,
}

impl DeadPin {
    /// Ends the pin, once the state that named the objects forgot them.
    pub fn unpin(self) {
        self.pool
            .cache(self.lcore)
            .0
            .pinned
            .store(0, Ordering::Release);
    }
}

/// Whether no live thread holds `lcore`: its holder died, or a process is repairing it.
fn lcore_orphaned(lcore: u32) -> bool {
    crate::eal().is_ok_and(|eal| eal.config().lcores[lcore as usize].owner.orphaned())
}

/// Whether any mempool's cache of `lcore` has objects pinned.
pub fn any_pin(lcore: u32) -> bool {
    list()
        .unwrap_or_default()
        .iter()
        .any(|mp| mp.has_pin(lcore))
}
