//! Owner words: one word of shared memory naming who may use a piece of shared state (an
//! lcore, a port queue, a side of a mempool's ring, a lock), so that the state of a
//! process killed at any instruction is found and repaired rather than lost or blocked
//! (ARCHITECTURE.md, "Crash model").
//!
//! The word holds 0 when free, the holder's id (a pid, or a thread id for
//! [`RobustLock`](crate::shm::RobustLock)) while held, and minus the id of a process
//! repairing the state after its holder died. A repair runs while the word names the
//! repairer, so nobody takes the state half repaired; a repairer that dies leaves a word
//! naming a dead id again, and the next one to find it repairs from the start. Repairs
//! must therefore be safe to run again after a partial run.

use crate::shm::ShmSafe;
use crate::sys;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// An owner word: see the module documentation.
#[repr(C)]
#[derive(Debug, Default)]
pub struct OwnerWord(AtomicI32);

// SAFETY: one atomic integer.
unsafe impl ShmSafe for OwnerWord {}

/// What [`OwnerWord::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The word was free (or freed from a dead holder): it now names the claimer.
    Now,
    /// The word already named the claimer.
    Already,
}

/// Spins before a waiting lock starts yielding the CPU, and how often it then checks
/// whether the holder died (a syscall: rarely).
const SPINS_BEFORE_YIELD: u32 = 128;
const SPINS_PER_LIVENESS_CHECK: u32 = 256;

impl OwnerWord {
    /// A free word.
    pub const fn new() -> Self {
        OwnerWord(AtomicI32::new(0))
    }

    /// A word held by `id`, for tests of the types that embed one.
    #[cfg(test)]
    pub(crate) fn held_by(id: i32) -> Self {
        OwnerWord(AtomicI32::new(id))
    }

    /// The word's value: 0 free, a holder's id, or minus a repairer's.
    pub fn load(&self) -> i32 {
        self.0.load(Ordering::Acquire)
    }

    /// The id of the live holder, if a live process holds the word (not a repairer).
    pub fn live_holder(&self) -> Option<i32> {
        let cur = self.load();
        (cur > 0 && sys::pid_alive(cur)).then_some(cur)
    }

    /// Whether no live holder uses the state: its holder died, or a process repairs it.
    pub fn orphaned(&self) -> bool {
        let cur = self.load();
        cur < 0 || holder_dead(cur)
    }

    /// Claims the word for `me`, refusing a live holder: `Err` names it. A holder (or
    /// repairer) that died is handed to `take_over`, which repairs and frees the word
    /// (normally through [`free_from_dead`](Self::free_from_dead)) and says whether it did;
    /// while it does not, or another process repairs, the claim waits.
    pub fn claim(&self, me: i32, take_over: impl FnMut(i32) -> bool) -> Result<Claimed, i32> {
        self.acquire(me, false, true, take_over)
    }

    /// Takes the word for `me`, waiting while anyone holds it (a same-id holder included:
    /// two threads of one process exclude each other); a dead holder is handed to
    /// `take_over` as in [`claim`](Self::claim). For short critical sections.
    pub fn lock(&self, me: i32, take_over: impl FnMut(i32) -> bool) {
        // Waiting, the acquire never gives up.
        let _ = self.acquire(me, true, false, take_over);
    }

    /// [`lock`](Self::lock) for `me`, a thread id: a word `me` holds already is held by
    /// this thread, and waiting for it would never end. `Already` says so; the caller
    /// decides whether that nests or is a bug.
    pub fn lock_thread(&self, me: i32, take_over: impl FnMut(i32) -> bool) -> Claimed {
        match self.acquire(me, true, true, take_over) {
            Ok(claimed) => claimed,
            Err(_) => unreachable!("a waiting acquire returns only once it holds the word"),
        }
    }

    /// The one claim loop of the owner words: see [`claim`](Self::claim) and
    /// [`lock`](Self::lock). `nests`: a word that already names `me` is `Already` held.
    fn acquire(
        &self,
        me: i32,
        wait: bool,
        nests: bool,
        mut take_over: impl FnMut(i32) -> bool,
    ) -> Result<Claimed, i32> {
        let mut spins: u32 = 0;
        loop {
            let cur = match self
                .0
                .compare_exchange_weak(0, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(Claimed::Now),
                Err(0) => continue,
                Err(cur) => cur,
            };
            if nests && cur == me {
                return Ok(Claimed::Already);
            }
            if wait {
                spins = spins.wrapping_add(1);
                if spins < SPINS_BEFORE_YIELD {
                    std::hint::spin_loop();
                    continue;
                }
                if !spins.is_multiple_of(SPINS_PER_LIVENESS_CHECK) {
                    // The holder may have been preempted: give it the CPU.
                    std::thread::yield_now();
                    continue;
                }
            }
            if repair_under_way(cur) {
                // A process repairs the state after its dead holder: free again shortly.
                std::thread::yield_now();
            } else if holder_dead(cur) {
                if !take_over(cur) {
                    // Left for another process to repair (see the callers).
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else if wait {
                std::thread::yield_now();
            } else {
                return Err(cur);
            }
        }
    }

    /// Gives the word back if `me` holds it; returns whether it did.
    pub fn release(&self, me: i32) -> bool {
        self.0
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives back a word taken with [`lock`](Self::lock) (the caller holds it).
    pub fn unlock(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// Frees the word of dead holder (or repairer) `dead`, running `repair` while the word
    /// names this process as the repairer. Returns whether this call did it: false when
    /// the word no longer names `dead` (someone else repairs it, or did).
    ///
    /// `dead` is trusted, not checked: a primary told a process exited may act before the
    /// kernel shows it dead.
    pub fn free_from_dead(&self, dead: i32, repair: impl FnOnce()) -> bool {
        if self
            .0
            .compare_exchange(dead, -sys::own_pid(), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        repair();
        self.0.store(0, Ordering::Release);
        true
    }

    /// Returns once the word names neither `dead` (trusted, as in
    /// [`free_from_dead`](Self::free_from_dead)) nor any other dead holder or live repairer:
    /// each such holder is handed to `take_over`.
    pub fn settle(&self, dead: i32, mut take_over: impl FnMut(i32) -> bool) {
        loop {
            match self.load() {
                0 => return,
                cur if cur == dead => {
                    take_over(cur);
                }
                cur if repair_under_way(cur) => std::thread::yield_now(),
                cur if holder_dead(cur) => {
                    take_over(cur);
                }
                _ => return,
            }
        }
    }
}

/// Whether word value `cur` says a live process is repairing the state: wait.
fn repair_under_way(cur: i32) -> bool {
    cur < 0 && sys::pid_alive(-cur)
}

/// Whether word value `cur` names a holder, or repairer, that no longer exists.
fn holder_dead(cur: i32) -> bool {
    cur != 0 && !sys::pid_alive(cur.saturating_abs())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The pid of a process that has exited and been waited for.
    fn dead_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let dead = child.id() as i32;
        child.wait().expect("wait");
        dead
    }

    #[test]
    fn a_dead_holder_is_repaired_once_then_free() {
        let dead = dead_pid();
        let me = sys::own_pid();
        let word = OwnerWord(AtomicI32::new(dead));
        assert!(holder_dead(dead) && !holder_dead(me) && !holder_dead(0));
        assert!(word.orphaned() && word.live_holder().is_none());
        let mut repairs = 0;
        assert!(word.free_from_dead(dead, || {
            // Meanwhile the word names this process as the repairer: others wait.
            assert!(repair_under_way(word.load()));
            repairs += 1;
        }));
        assert_eq!(word.load(), 0);
        // A second try (the primary after a claimer, or the other way round) does nothing.
        assert!(!word.free_from_dead(dead, || repairs += 1));
        assert_eq!(repairs, 1);
        // A repairer that died is dead too: its repair can be taken over.
        assert!(holder_dead(-dead) && !repair_under_way(-dead));
    }

    #[test]
    fn a_claim_refuses_a_live_holder_and_takes_over_a_dead_one() {
        let me = sys::own_pid();
        let parent = std::os::unix::process::parent_id() as i32;
        let word = OwnerWord::new();
        assert_eq!(word.claim(me, |_| unreachable!()), Ok(Claimed::Now));
        assert_eq!(word.claim(me, |_| unreachable!()), Ok(Claimed::Already));
        assert_eq!(word.live_holder(), Some(me));
        // Another live process holds it: refused, naming it.
        assert!(!word.release(parent));
        assert!(word.release(me));
        word.0.store(parent, Ordering::Relaxed);
        assert_eq!(word.claim(me, |_| unreachable!()), Err(parent));
        // A dead holder: repaired through take_over, then claimed.
        let dead = dead_pid();
        word.0.store(dead, Ordering::Relaxed);
        let mut seen = Vec::new();
        let claimed = word.claim(me, |d| {
            seen.push(d);
            word.free_from_dead(d, || {})
        });
        assert_eq!((claimed, seen), (Ok(Claimed::Now), vec![dead]));
    }

    #[test]
    fn a_dead_repairer_is_taken_over() {
        let dead = dead_pid();
        let word = OwnerWord(AtomicI32::new(-dead));
        let mut repaired = 0;
        word.settle(dead, |d| word.free_from_dead(d, || repaired += 1));
        assert_eq!((word.load(), repaired), (0, 1));
    }

    #[test]
    fn settling_trusts_the_dead_value_and_leaves_a_live_holder() {
        let me = sys::own_pid();
        // The primary is told `me` died before the kernel shows it: trusted.
        let word = OwnerWord(AtomicI32::new(me));
        let mut repaired = 0;
        word.settle(me, |d| word.free_from_dead(d, || repaired += 1));
        assert_eq!((word.load(), repaired), (0, 1));
        // Another live holder stays.
        let parent = std::os::unix::process::parent_id() as i32;
        word.0.store(parent, Ordering::Relaxed);
        word.settle(me, |_| unreachable!());
        assert_eq!(word.load(), parent);
    }

    /// Four threads each add 10,000 to a counter with a non-atomic read-modify-write,
    /// inside `locked`; the total is right only if `locked` excludes the others.
    pub(crate) fn assert_excludes_four_threads(locked: impl Fn(&dyn Fn()) + Send + Sync + 'static) {
        let locked = std::sync::Arc::new(locked);
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (l, c) = (locked.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        l(&|| {
                            let v = c.load(Ordering::Relaxed);
                            c.store(v + 1, Ordering::Relaxed);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(counter.load(Ordering::Relaxed), 40_000);
    }

    #[test]
    fn a_lock_excludes_threads_of_one_process() {
        let word = OwnerWord::new();
        // Every thread locks with the same id: the pid.
        assert_excludes_four_threads(move |add| {
            word.lock(sys::own_pid(), |_| unreachable!());
            add();
            word.unlock();
        });
    }
}
