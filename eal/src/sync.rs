//! The atomics and spin hints of the ring, of the mempool's logged moves and of the hash
//! table: std's, or, in eal's own tests built with `RUSTFLAGS="--cfg loom"`, loom's, so that
//! the loom models (`ring/loom_model.rs`, `mempool/loom_model.rs`, `hash/loom_model.rs`)
//! check this very code under every interleaving the C11 memory model allows.
//!
//! Under loom each write to an atomic is also a place where the writing thread can be
//! killed ([`killed_before_write`]): a process killed at any instruction leaves shared
//! memory as it was after its last write, so killing a thread before each of its writes in
//! turn covers every state a kill can leave.

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A hint inside a busy wait (loom: a point where another thread runs).
#[cfg(not(all(test, loom)))]
#[inline(always)]
pub(crate) fn spin_hint() {
    std::hint::spin_loop()
}

/// Gives the CPU to another thread inside a longer wait.
#[cfg(not(all(test, loom)))]
#[inline(always)]
pub(crate) fn yield_now() {
    std::thread::yield_now()
}

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::fence;
#[cfg(all(test, loom))]
pub(crate) use model::{
    at_every_kill_point, being_killed, explore, killed_before_write, kills_seen, spin_hint,
    yield_now, AtomicU32, AtomicU64, AtomicUsize,
};
#[cfg(all(test, loom))]
pub(crate) use std::sync::atomic::Ordering;

#[cfg(all(test, loom))]
mod model {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    pub(crate) fn spin_hint() {
        loom::hint::spin_loop()
    }

    pub(crate) fn yield_now() {
        loom::thread::yield_now()
    }

    loom::thread_local! {
        /// Writes this loom thread may still make before it is killed (None: never).
        static WRITES_LEFT: Cell<Option<u32>> = Cell::new(None);
        /// Whether this loom thread is unwinding from its kill.
        static KILLED: Cell<bool> = Cell::new(false);
    }

    /// The unwinding payload of a killed thread.
    struct Killed;

    /// Counts a write of this thread; kills it (unwinds to [`killed_before_write`]) when
    /// it has used up the writes it was given.
    fn write_step() {
        let left = WRITES_LEFT.with(|w| w.get());
        match left {
            Some(0) => {
                KILLED.with(|k| k.set(true));
                std::panic::resume_unwind(Box::new(Killed))
            }
            Some(n) => WRITES_LEFT.with(|w| w.set(Some(n - 1))),
            None => {}
        }
    }

    /// Runs `f` in this loom thread as a process killed just before its write number
    /// `kill_at` (0: its first) to any atomic, if it gets that far: returns `None` when it
    /// was killed, with shared memory as the writes before left it, else `f`'s result.
    /// `kill_at = None` never kills.
    pub(crate) fn killed_before_write<R>(kill_at: Option<u32>, f: impl FnOnce() -> R) -> Option<R> {
        WRITES_LEFT.with(|w| w.set(kill_at));
        // resume_unwind, not panic: no panic hook runs, so a kill prints nothing; any
        // other panic (a failed assertion, loom's own findings) goes on unwinding.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        WRITES_LEFT.with(|w| w.set(None));
        KILLED.with(|k| k.set(false));
        match outcome {
            Ok(r) => Some(r),
            Err(payload) if payload.is::<Killed>() => None,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Whether this thread is being killed: a drop guard on its stack must then do nothing,
    /// as a killed process runs no more code.
    pub(crate) fn being_killed() -> bool {
        KILLED.with(|k| k.get())
    }

    /// Checks `model` under every interleaving with at most three preemptions: enough for
    /// the races between the models' few steps, few enough that each ends in seconds. An
    /// execution may take 10,000 scheduling points, not loom's 1,000: the hash table's
    /// models fill a bucket, then check the whole table; a spin that never yields still
    /// ends the model within a second.
    pub(crate) fn explore(model: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.max_branches = 10_000;
        builder.check(model);
    }

    /// Explores `model(k)`, whose victim thread is killed before its write `k`, for k = 0,
    /// 1, ... until the victim finishes in every execution: a kill at each of its steps.
    /// `model` returns whether its victim was killed.
    pub(crate) fn at_every_kill_point(model: impl Fn(u32) -> bool + Copy + Sync + Send + 'static) {
        for k in 0.. {
            if !kills_seen(move || [model(k)])[0] {
                assert!(
                    k > 0,
                    "the victim was never killed: the model checks nothing"
                );
                return;
            }
        }
    }

    /// Explores `model`, which says which of its `N` killable threads were killed; returns
    /// which were in any execution.
    pub(crate) fn kills_seen<const N: usize>(
        model: impl Fn() -> [bool; N] + Sync + Send + 'static,
    ) -> [bool; N] {
        let seen: Arc<[AtomicBool; N]> = Arc::new(std::array::from_fn(|_| AtomicBool::new(false)));
        let record = seen.clone();
        explore(move || {
            for (killed, seen) in model().iter().zip(record.iter()) {
                if *killed {
                    seen.store(true, Ordering::Relaxed);
                }
            }
        });
        std::array::from_fn(|i| seen[i].load(Ordering::Relaxed))
    }

    /// A loom atomic whose writes are kill points (see the module documentation).
    macro_rules! killable_atomic {
        ($name:ident, $int:ty) => {
            #[derive(Debug, Default)]
            pub(crate) struct $name(loom::sync::atomic::$name);

            impl $name {
                #[track_caller]
                pub(crate) fn new(v: $int) -> Self {
                    Self(loom::sync::atomic::$name::new(v))
                }
                #[track_caller]
                pub(crate) fn load(&self, order: Ordering) -> $int {
                    self.0.load(order)
                }
                #[track_caller]
                pub(crate) fn store(&self, v: $int, order: Ordering) {
                    write_step();
                    self.0.store(v, order)
                }
            }
        };
    }

    killable_atomic!(AtomicU32, u32);
    killable_atomic!(AtomicU64, u64);
    killable_atomic!(AtomicUsize, usize);

    /// The read-modify-writes the ring's indexes and the hash table's change counter use.
    impl AtomicU32 {
        #[track_caller]
        pub(crate) fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
            write_step();
            self.0.fetch_add(v, order)
        }
        #[track_caller]
        pub(crate) fn swap(&self, v: u32, order: Ordering) -> u32 {
            write_step();
            self.0.swap(v, order)
        }
        #[track_caller]
        pub(crate) fn compare_exchange_weak(
            &self,
            current: u32,
            new: u32,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u32, u32> {
            write_step();
            self.0.compare_exchange_weak(current, new, success, failure)
        }
    }
}
