//! Freeing sent packets that a TX queue's shared state still names (its ring's sent
//! slots, a count of what a burst took), so that a poller killed at any instruction loses
//! none and frees none twice.
//!
//! The protocol, in order ([`free_then_forget`]):
//! 1. The poller puts the batch (drivers take [`FREE_BATCH`] at a time) back into its
//!    lcore's cache of their pool, pinned there (`LocalCache::put_pinned`): the put is
//!    their one step back into the pool.
//! 2. The queue forgets the batch (the caller's `forget`).
//! 3. The pin ends (`LocalCache::unpin`).
//!
//! If the poller dies between 1 and 3, whoever repairs its queue finds the batch still
//! pinned in the dead lcore's cache ([`dead_pin_holding`], [`dead_pinned_prefix`]), makes
//! the queue forget those it still names, and ends the pin (`DeadPin::unpin`). The dead
//! lcore's cache is emptied into the pool's ring only after that, so no packet is handed
//! out again while a queue still names it. Packets that cannot go back pinned (chained,
//! shared, of several pools, more than the cache keeps, or on a thread without an lcore
//! cache) are held by the poller (their holder word, ARCHITECTURE.md "Holds"), forgotten,
//! then freed: a kill in between leaves them held by a dead process, which the primary
//! frees. A shared one (refcount above 1) cannot be held by one process: a kill in
//! between loses its reference.
//!
//! A queue whose application promised DPDK's `MBUF_FAST_FREE` (every packet one segment
//! with one reference, all of one pool: [`Mbuf::fast_free_pool`], checked as the queue
//! takes each) frees with [`fast_free_then_forget`]: the same pinned put, forget, unpin,
//! straight from the queue's own words and without a look at each packet.

use super::{addrs, free_bulk, plain_pool, Mbuf, MbufHeader, PktmbufPool};
use eal::mempool::{LocalCache, Mempool};
use std::sync::atomic::Ordering;

/// How many sent mbufs a TX queue frees at once (see [`free_then_forget`]).
pub const FREE_BATCH: usize = 32;

/// Frees the first `n` of `pkts`, packets that a queue's shared state still names (a TX
/// ring's sent slots, a count of what a burst took), and has `forget` update that state,
/// so that a poller killed in between loses none and frees none twice. Plain packets (see
/// `free_bulk`) of a pool this lcore caches go back pinned in the cache, then `forget`
/// runs, then the pin ends: whoever repairs the state after such a death finds them with
/// [`dead_pin_holding`]. Otherwise this process holds them before `forget` runs, and
/// frees them after: what a kill leaves is found by its hold (but for shared ones).
#[inline]
pub fn free_then_forget(pkts: &mut Vec<Mbuf>, n: usize, forget: impl FnOnce()) {
    let front = &pkts[..n];
    if let Some(p) = plain_pool(front) {
        if let Some(cache) = put_pinned(&p.mp, addrs(front)) {
            // SAFETY: the first n are back in their pool: they leave the vector without
            // being dropped, the rest move down.
            unsafe {
                let rest = pkts.len() - n;
                if rest > 0 {
                    let at = pkts.as_mut_ptr();
                    std::ptr::copy(at.add(n), at, rest);
                }
                pkts.set_len(rest);
            }
            forget();
            cache.unpin();
            return;
        }
    }
    // Held by this process from before the queue forgets them until each is back in its
    // pool: a kill in between leaves them to `reclaim_held_by`; one before leaves them
    // named by the queue, whose repair ends the holds.
    for m in front {
        // SAFETY: an mbuf this process has a reference to.
        unsafe { super::holder::hold_if_sole(m.addr()) };
    }
    forget();
    if n == pkts.len() {
        free_bulk(pkts);
    } else {
        pkts.drain(..n);
    }
}

/// [`free_then_forget`] for a queue whose application promised DPDK's `MBUF_FAST_FREE`:
/// `objs`, the sent packets as the queue names them (its words, oldest first), go back
/// pinned into this lcore's cache of `pool` without a look at each, then `forget` runs (it
/// may overwrite those words), then the pin ends. False, with nothing done, when the cache
/// cannot take them all (no lcore cache, more than it keeps): the caller frees them with
/// [`free_then_forget`] instead.
///
/// # Safety
/// `objs` points at readable words, each the address of an mbuf of `pool` with one segment
/// and one reference ([`Mbuf::fast_free_pool`] said so), which the caller's queue owns.
#[inline]
pub unsafe fn fast_free_then_forget(
    pool: &PktmbufPool,
    objs: *const [usize],
    forget: impl FnOnce(),
) -> bool {
    // SAFETY: the caller's words; the borrow ends before `forget` may overwrite them.
    let Some(cache) = put_pinned(&pool.mp, unsafe { &*objs }) else {
        return false;
    };
    forget();
    cache.unpin();
    true
}

/// The first step of both frees: puts `objs` (plain packets of `mp`) back into this
/// lcore's cache, pinned, and ends their holds, since they are in the cache now (see
/// `holder::put_back`). The caller's queue forgets them, then the pin ends
/// (`LocalCache::unpin`). None, with nothing done, when the cache cannot take them all.
#[inline(always)]
fn put_pinned<'a>(mp: &'a Mempool, objs: &[usize]) -> Option<LocalCache<'a>> {
    let cache = mp.local_cache()?;
    if !cache.put_pinned(objs) {
        return None;
    }
    super::holder::clear(objs);
    Some(cache)
}

impl Mbuf {
    /// The pool of a packet that a queue with `MBUF_FAST_FREE` may free without a look at
    /// it ([`fast_free_then_forget`]): one segment with one reference. None for any other
    /// (a chain, a shared one), which breaks the application's promise.
    #[inline(always)]
    pub fn fast_free_pool(&self) -> Option<u64> {
        let h = self.h();
        (h.nb_segs == 1 && h.refcnt.load(Ordering::Relaxed) == 1).then_some(h.pool)
    }
}

/// The packets a poller killed inside [`free_then_forget`] had put back, `addr` among
/// them, when the lcore's thread is dead and its cache not yet emptied.
///
/// # Safety
/// `addr` is an mbuf's address, named by the state the caller repairs.
pub unsafe fn dead_pin_holding(addr: usize) -> Option<eal::mempool::DeadPin> {
    // SAFETY: the caller's promise: the header names the mbuf's pool.
    let pool = unsafe { (*(addr as *const MbufHeader)).pool };
    // SAFETY: the pool outlives its buffers.
    unsafe { PktmbufPool::from_addr(pool) }?
        .mp
        .dead_pin_holding(addr)
}

/// For whoever repairs a queue after its poller died: how many of `oldest` (the mbufs the
/// queue still names, oldest first, at least a [`FREE_BATCH`] of them when it has them) the
/// poller had already put back inside [`free_then_forget`]. The queue must forget those,
/// then end the pin (`DeadPin::unpin`), before the dead lcore's cache is emptied.
///
/// # Safety
/// `oldest` are mbufs' addresses, named by the queue the caller repairs.
pub unsafe fn dead_pinned_prefix(oldest: &[usize]) -> Option<(usize, eal::mempool::DeadPin)> {
    let first = *oldest.first()?;
    // SAFETY: forwarded to the caller.
    let pin = unsafe { dead_pin_holding(first) }?;
    // The poller put them in the queue's order and was killed before the queue forgot
    // them all: those it still names are a tail of the pinned ones, in order.
    let k = pin.objs.iter().position(|o| *o == first)?;
    let left = &pin.objs[k..];
    if left.len() > oldest.len() || left.iter().zip(oldest).any(|(o, q)| o != q) {
        log::error!(
            "the mbufs a dead poller put back do not match its queue's oldest; left as they are"
        );
        return None;
    }
    Some((left.len(), pin))
}
