//! Named fault points: places in the code where a test can have a process killed with
//! SIGKILL, to check that the group survives a process dying there (ARCHITECTURE.md,
//! "Crash model").
//!
//! A point is written `eal::fault_point!("name")`. Without the cargo feature `fault-points`
//! of this crate the macro expands to nothing. With it, a process started with
//! `RPMD_FAULT_POINT=name` (or `name@N`: the Nth time any thread of the process gets
//! there, 1 by default) writes `fault point NAME hit: killing process PID` to stderr when
//! it gets there and kills itself with SIGKILL: no unwinding, no exit handlers, the shared
//! state left exactly as it was at that instruction. The variable is read once.
//!
//! The points, and what state the process is in when it dies there, are in [`POINTS`].
//!
//! One of them, `store`, is not one place but many: `eal::store_point!("what")` follows
//! each store to shared memory of the operations a crash must not break (ring enqueues and
//! dequeues, mempool gets and puts, mbuf allocation, freeing and references, memzone and
//! heap changes, port queue take-overs, the software PMDs' bursts, a primary's start-up and
//! its config reset, lcore claims), so that
//! `RPMD_FAULT_POINT=store@N` kills the process right after its Nth such store, whichever
//! it is (the line then names it: `... (after ring.tail)`). A harness that runs an
//! operation once for every N explores every state a kill inside it can leave
//! (`tests/tests/crash_points.rs`). Stores that nobody reads before a later store covers
//! them (a run of ring or cache slots before the index that publishes them) count as one,
//! after the run. [`arm_stores`] arms the count from a chosen moment of the program
//! instead of its start, so that a process's own set-up is not counted.

/// Every fault point: its name and the state a process killed there leaves behind.
pub const POINTS: &[(&str, &str)] = &[
    (
        "mempool.pinned.put",
        "LocalCache::put_pinned has put the batch on top of the lcore cache and pinned it; \
         the caller (a TX queue's free) still names those objects in shared memory",
    ),
    (
        "mempool.put.published",
        "a logged put (a cache's overflow) has put the objects into the pool's ring; the \
         process holds the ring's put side, and the cache's count is not yet lowered",
    ),
    (
        "mempool.get.taken",
        "a logged get (a cache's refill) has taken the objects from the pool's ring; the \
         process holds the ring's get side, and the cache's count has not yet grown",
    ),
    (
        "ring.mp_enqueue.claimed",
        "a multi-producer enqueue's compare-and-swap of the head succeeded: the slots are \
         claimed, neither written nor published (net_ring's TX burst enqueues so)",
    ),
    (
        "intel.tx.written",
        "the Intel TX burst has written descriptors and slots for its frames, and has not \
         committed them (the ring's next index and the tail register are as before)",
    ),
    (
        "store",
        "just after the Nth store to shared memory marked by eal::store_point! (counted \
         from the start, or from fault::arm_stores): whatever that store and those before \
         it left, the operation unfinished; the death line names the store",
    ),
    (
        "af_xdp.rx.taken",
        "an AF_XDP RX burst has taken frames from the socket's RX ring into the poller's \
         hands (their holder words name it) and has not moved the ring's consumer",
    ),
    (
        "af_xdp.fill.committed",
        "an AF_XDP refill has posted fresh mbufs to the fill ring (its producer moved) and \
         not yet marked them lent to the kernel: they still name the poller",
    ),
    (
        "af_xdp.tx.committed",
        "an AF_XDP TX burst has moved the TX ring's producer past its frames and not yet \
         marked them lent to the kernel, counted them taken or told the kernel to send",
    ),
    (
        "capture.copied",
        "a poller has entered a queue's capture (its sequence word odd, naming it) and \
         copied a burst into the capture's pool, and has not handed the copies over or left",
    ),
    (
        "ethdev.rx_burst.returned",
        "RxQueue::rx_burst is handing the app packets: they are in no queue and no pool, \
         only in the app's hands (and their holder words) until it sends or frees them",
    ),
];

/// The environment variable that arms a fault point in a process.
pub const ENV: &str = "RPMD_FAULT_POINT";

/// Whether this build has the fault points (the feature `fault-points`).
pub const ENABLED: bool = cfg!(feature = "fault-points");

/// Marks a fault point named by a string literal (one of [`fault::POINTS`](crate::fault::POINTS)).
/// Built with the feature `fault-points`: a process armed for it by `RPMD_FAULT_POINT` is
/// killed here.
#[cfg(feature = "fault-points")]
#[macro_export]
macro_rules! fault_point {
    ($name:literal) => {
        $crate::fault::hit($name)
    };
}

/// Marks a fault point named by a string literal (one of [`fault::POINTS`](crate::fault::POINTS)).
/// Built without the feature `fault-points`: nothing.
#[cfg(not(feature = "fault-points"))]
#[macro_export]
macro_rules! fault_point {
    ($name:literal) => {};
}

/// Marks a store to shared memory (the point `store`), named by a string literal saying
/// which store it was (`"ring.tail"`). Built with the feature `fault-points`: a process
/// armed for `store@N` (or by [`fault::arm_stores`](crate::fault::arm_stores)) is killed
/// here if this is its Nth marked store.
#[cfg(feature = "fault-points")]
#[macro_export]
macro_rules! store_point {
    ($what:literal) => {
        $crate::fault::stored($what)
    };
}

/// Marks a store to shared memory (the point `store`). Built without the feature
/// `fault-points`: nothing.
#[cfg(not(feature = "fault-points"))]
#[macro_export]
macro_rules! store_point {
    ($what:literal) => {};
}

/// The name of the point that counts stores ([`store_point!`](crate::store_point)).
pub const STORE: &str = "store";

/// Arms this process to die right after its `at`th store point from now on (1: the next
/// one), replacing what `RPMD_FAULT_POINT=store@N` said; `u64::MAX` only counts. False, with
/// nothing armed, in a build without the fault points.
pub fn arm_stores(at: u64) -> bool {
    #[cfg(feature = "fault-points")]
    armed::arm_stores(at);
    #[cfg(not(feature = "fault-points"))]
    let _ = at;
    ENABLED
}

/// Store points this process went through since it was armed for stores (0 when it is not).
pub fn stores_counted() -> u64 {
    #[cfg(feature = "fault-points")]
    return armed::stores_counted();
    #[cfg(not(feature = "fault-points"))]
    0
}

/// The point this process is armed for, and at which hit it dies.
#[cfg(any(test, feature = "fault-points"))]
#[derive(Debug, PartialEq, Eq)]
struct Armed {
    name: String,
    at: u64,
}

/// Parses the variable's value: `name` or `name@N` (N >= 1), `name` one of [`POINTS`].
#[cfg(any(test, feature = "fault-points"))]
fn parse(spec: &str) -> Result<Armed, String> {
    let (name, at) = match spec.split_once('@') {
        None => (spec, 1),
        Some((name, n)) => match n.parse::<u64>() {
            Ok(n) if n >= 1 => (name, n),
            _ => return Err(format!("'{n}' is not a hit number (1 or more)")),
        },
    };
    if !POINTS.iter().any(|(p, _)| *p == name) {
        return Err(format!("no fault point is named '{name}'"));
    }
    Ok(Armed {
        name: name.to_string(),
        at,
    })
}

#[cfg(feature = "fault-points")]
mod armed {
    use super::{parse, Armed, ENV, STORE};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    /// Hits of the armed point so far, by any thread.
    static HITS: AtomicU64 = AtomicU64::new(0);
    /// The store point to die at (0: stores are not armed), and those passed so far.
    static STORE_AT: AtomicU64 = AtomicU64::new(0);
    static STORES: AtomicU64 = AtomicU64::new(0);

    /// The point this process is armed for, from the environment. A value that does not
    /// parse stops the process: a test that armed a point must not run on unarmed.
    #[cold]
    fn read_env() -> Option<Armed> {
        let spec = std::env::var(ENV).ok()?;
        match parse(&spec) {
            Ok(a) => {
                if a.name == STORE {
                    STORE_AT.store(a.at, Ordering::Relaxed);
                }
                Some(a)
            }
            Err(e) => {
                eprintln!("{ENV}={spec}: {e}");
                std::process::abort();
            }
        }
    }

    pub(super) fn arm_stores(at: u64) {
        // The environment first, so that it cannot override this later.
        ARMED.get_or_init(read_env);
        STORES.store(0, Ordering::Relaxed);
        STORE_AT.store(at, Ordering::Relaxed);
    }

    pub(super) fn stores_counted() -> u64 {
        STORES.load(Ordering::Relaxed)
    }

    /// Called by [`store_point!`](crate::store_point): kills this process if it is armed
    /// for stores and this is the store it was armed for.
    #[inline]
    pub fn stored(what: &'static str) {
        ARMED.get_or_init(read_env);
        let at = STORE_AT.load(Ordering::Relaxed);
        if at != 0 {
            count_store(what, at);
        }
    }

    #[cold]
    #[inline(never)]
    fn count_store(what: &str, at: u64) {
        if STORES.fetch_add(1, Ordering::Relaxed) + 1 == at {
            die(STORE, &format!(" (after {what})"));
        }
    }

    /// Called by [`fault_point!`](crate::fault_point): kills this process if it is armed
    /// for `name` and this is the hit it was armed for.
    #[inline]
    pub fn hit(name: &'static str) {
        if let Some(a) = ARMED.get_or_init(read_env) {
            if a.name == name {
                hit_armed(name, a.at);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn hit_armed(name: &str, at: u64) {
        if HITS.fetch_add(1, Ordering::Relaxed) + 1 == at {
            die(name, "");
        }
    }

    /// Writes the line tests wait for (`detail` after it), then kills this process where
    /// it stands.
    fn die(name: &str, detail: &str) -> ! {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let line = format!("fault point {name} hit: killing process {pid}{detail}\n");
        // One write(2), unbuffered: the line is out before the process dies. A short or
        // failed write only costs the test its message.
        // SAFETY: the pointer and length are those of `line`, alive across the call.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
        // SAFETY: signalling our own process. SIGKILL cannot be caught: the kernel ends
        // every thread before this one runs another instruction of user code.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Not reached; should the kill have failed, still die without unwinding.
        std::process::abort()
    }
}

#[cfg(feature = "fault-points")]
pub use armed::{hit, stored};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_alone_dies_at_the_first_hit() {
        assert_eq!(
            parse("mempool.put.published"),
            Ok(Armed {
                name: "mempool.put.published".into(),
                at: 1
            })
        );
    }

    #[test]
    fn a_hit_number_follows_an_at_sign() {
        assert_eq!(
            parse("ring.mp_enqueue.claimed@3"),
            Ok(Armed {
                name: "ring.mp_enqueue.claimed".into(),
                at: 3
            })
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse("no.such.point").is_err());
        assert!(parse("").is_err());
        assert!(parse("mempool.get.taken@0").is_err());
        assert!(parse("mempool.get.taken@").is_err());
        assert!(parse("mempool.get.taken@x").is_err());
        assert!(parse("mempool.get.taken@-1").is_err());
    }

    #[test]
    fn names_are_unique_and_dotted() {
        for (i, (name, _)) in POINTS.iter().enumerate() {
            assert!(
                (name.contains('.') || *name == STORE) && !name.contains('@'),
                "{name}"
            );
            assert!(POINTS[i + 1..].iter().all(|(n, _)| n != name), "{name}");
        }
    }
}
