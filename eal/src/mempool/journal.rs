//! The logged moves through a pool's ring: one process at a time on each side, each move
//! saying beforehand what it moves, so that the move of a process killed inside it is
//! finished or undone by whoever next takes that side.

use super::Mempool;
use crate::owner::OwnerWord;
use crate::sync::{AtomicU32, Ordering};

/// One side of the pool's ring, which one process at a time moves objects through (the
/// side is single-producer, or single-consumer, while `holder` is held), and what the move
/// under way moves: each says beforehand which cache slots it empties or fills, so that a
/// move whose process died is finished or undone exactly by whoever finds its holder dead
/// ([`Mempool::repair_move`]).
#[repr(C)]
#[derive(Default)]
pub(super) struct SideLog {
    /// The moving process.
    holder: OwnerWord,
    /// How many objects the move may move (0: none under way).
    n: AtomicU32,
    /// The lcore whose cache they leave or fill, from slot `from` (NO_LCORE: the
    /// caller's own objects).
    lcore: AtomicU32,
    from: AtomicU32,
    /// The side's tail in the ring before the move.
    tail: AtomicU32,
}

/// A move of the caller's own objects, not a cache's.
pub(super) const NO_LCORE: u32 = u32::MAX;

/// The two sides of a pool's ring.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Side {
    Put,
    Get,
}

impl Mempool {
    /// Puts `objs` into the ring, the one put under way: `objs` are slots `from..` of
    /// `lcore`'s cache (or the caller's own, NO_LCORE), and `done` runs once they are in
    /// the ring, before the put ends (a cache's count shrinks there).
    pub(super) fn put_logged(&self, objs: &[usize], lcore: u32, from: u32, done: impl FnOnce()) {
        self.lock_side(Side::Put);
        self.put_locked(objs, lcore, from, done);
        self.unlock_side(Side::Put);
    }

    /// [`put_logged`](Self::put_logged) with the put side already held.
    pub(super) fn put_locked(&self, objs: &[usize], lcore: u32, from: u32, done: impl FnOnce()) {
        self.publish_logged(objs, lcore, from);
        done();
        self.side_log(Side::Put).n.store(0, Ordering::Release);
        crate::store_point!("mempool.log.n");
    }

    /// Logs the put, then puts `objs` into the ring.
    fn publish_logged(&self, objs: &[usize], lcore: u32, from: u32) {
        self.log_move(Side::Put, objs.len(), lcore, from);
        // The ring holds every object of the pool, so this cannot fail.
        self.ring.sp_enqueue_bulk(objs);
        crate::fault_point!("mempool.put.published");
    }

    /// Takes up to `objs.len()` objects from the ring (all or none for the caller's own,
    /// NO_LCORE; as many as there are for slots `from..` of `lcore`'s cache), the one get
    /// under way; `done` gets how many, before the get ends (a cache's count grows there).
    /// Returns how many.
    pub(super) fn get_logged(
        &self,
        objs: &mut [usize],
        lcore: u32,
        from: u32,
        done: impl FnOnce(usize),
    ) -> usize {
        self.lock_side(Side::Get);
        let got = self.take_logged(objs, lcore, from);
        done(got);
        self.side_log(Side::Get).n.store(0, Ordering::Release);
        crate::store_point!("mempool.log.n");
        self.unlock_side(Side::Get);
        got
    }

    /// Logs the get, then takes from the ring.
    fn take_logged(&self, objs: &mut [usize], lcore: u32, from: u32) -> usize {
        self.log_move(Side::Get, objs.len(), lcore, from);
        let got = if lcore == NO_LCORE {
            self.ring.sc_dequeue_bulk(objs)
        } else {
            self.ring.sc_dequeue_burst(objs)
        };
        crate::fault_point!("mempool.get.taken");
        got
    }

    fn side_log(&self, side: Side) -> &SideLog {
        match side {
            Side::Put => &self.hdr().puts,
            Side::Get => &self.hdr().gets,
        }
    }

    /// How many objects have gone through `side` of the ring, modulo 2^32.
    fn side_tail(&self, side: Side) -> u32 {
        match side {
            Side::Put => self.ring.enqueued_count(),
            Side::Get => self.ring.dequeued_count(),
        }
    }

    /// Takes `side` of the ring for this process, repairing first the move of a process
    /// that died holding it ([`repair_move`](Self::repair_move)).
    pub(super) fn lock_side(&self, side: Side) {
        self.side_log(side)
            .holder
            .lock(crate::sys::own_pid(), |dead| {
                self.take_over_side(side, dead)
            });
        crate::store_point!("mempool.side.holder");
    }

    /// Frees `side` of the ring from its dead holder `dead`, repairing the move it died in
    /// ([`repair_move`](Self::repair_move)); false when `dead` no longer holds it.
    pub(super) fn take_over_side(&self, side: Side, dead: i32) -> bool {
        self.side_log(side)
            .holder
            .free_from_dead(dead, || self.repair_move(side))
    }

    pub(super) fn unlock_side(&self, side: Side) {
        self.side_log(side).holder.unlock();
        crate::store_point!("mempool.side.holder");
    }

    /// Says which objects the move about to start on `side` moves.
    #[inline(always)]
    fn log_move(&self, side: Side, n: usize, lcore: u32, from: u32) {
        let log = self.side_log(side);
        log.lcore.store(lcore, Ordering::Relaxed);
        crate::store_point!("mempool.log.lcore");
        log.from.store(from, Ordering::Relaxed);
        crate::store_point!("mempool.log.from");
        log.tail.store(self.side_tail(side), Ordering::Relaxed);
        crate::store_point!("mempool.log.tail");
        // Release: whoever reads n sees the rest.
        log.n.store(n as u32, Ordering::Release);
        crate::store_point!("mempool.log.n");
    }

    /// Finishes or undoes the move of a process that died holding `side` of the ring (see
    /// [`SideLog`]): a claim it left unfinished is given up (those objects are still where
    /// they were), and the count of the cache whose objects went through the ring is made
    /// to say so.
    fn repair_move(&self, side: Side) {
        let log = self.side_log(side);
        let n = log.n.load(Ordering::Acquire);
        let abandoned = match side {
            Side::Put => self.ring.abandon_enqueue_claims(),
            Side::Get => self.ring.abandon_dequeue_claims(),
        };
        if n == 0 {
            return;
        }
        let moved = self
            .side_tail(side)
            .wrapping_sub(log.tail.load(Ordering::Relaxed));
        let (lcore, from) = (
            log.lcore.load(Ordering::Relaxed),
            log.from.load(Ordering::Relaxed),
        );
        let verb = match side {
            Side::Put => "put",
            Side::Get => "get",
        };
        if lcore == NO_LCORE {
            // A put that did not happen, or a get that did, leaves the objects in the dead
            // caller's own hands.
            if (side == Side::Put) == (moved == 0) {
                log::warn!(
                    "mempool '{}': a process died in a {verb} of {n} objects of its own: they are lost",
                    self.name()
                );
            }
        } else if moved > 0 {
            // The count may have changed already: the move's last step.
            let count = &self.cache(lcore).0.len;
            match side {
                Side::Put if count.load(Ordering::Acquire) > from => {
                    count.store(from, Ordering::Release)
                }
                Side::Get if count.load(Ordering::Acquire) == from => {
                    count.store(from + moved, Ordering::Release)
                }
                _ => {}
            }
        }
        log::info!(
            "mempool '{}': finished a dead process's {verb} of {n} objects ({moved} had gone through the ring; {abandoned} claimed slots given up)",
            self.name()
        );
        log.n.store(0, Ordering::Release);
    }
}
