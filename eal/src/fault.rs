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
    use super::{parse, Armed, ENV};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    /// Hits of the armed point so far, by any thread.
    static HITS: AtomicU64 = AtomicU64::new(0);

    /// The point this process is armed for, from the environment. A value that does not
    /// parse stops the process: a test that armed a point must not run on unarmed.
    #[cold]
    fn read_env() -> Option<Armed> {
        let spec = std::env::var(ENV).ok()?;
        match parse(&spec) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("{ENV}={spec}: {e}");
                std::process::abort();
            }
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
            die(name);
        }
    }

    /// Writes the line tests wait for, then kills this process where it stands.
    fn die(name: &str) -> ! {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let line = format!("fault point {name} hit: killing process {pid}\n");
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
pub use armed::hit;

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
            assert!(name.contains('.') && !name.contains('@'), "{name}");
            assert!(POINTS[i + 1..].iter().all(|(n, _)| n != name), "{name}");
        }
    }
}
