//! Rules for types placed in memory shared between processes (ARCHITECTURE.md, "Rules
//! for shared memory"), and the lock that survives the death of its holder.

use crate::owner::{Claimed, OwnerWord};
use crate::sys;

/// Marker for types that may live in memory shared by the processes of a group.
///
/// # Safety
/// The type is `#[repr(C)]`, and holds only plain data, atomics, and addresses into the
/// group's shared range: no heap pointers, no function pointers, no trait objects, no file
/// descriptors. Every process may then read it at the same address with the same meaning.
pub unsafe trait ShmSafe {}

/// A spin lock for shared memory that records the thread id of its holder in an
/// [`OwnerWord`], and takes the lock over when that holder has died (a killed process
/// cannot unlock).
#[repr(C)]
#[derive(Debug, Default)]
pub struct RobustLock {
    owner: OwnerWord,
}

// SAFETY: one owner word.
unsafe impl ShmSafe for RobustLock {}

/// Holds a [`RobustLock`]; unlocks on drop.
pub struct RobustGuard<'a> {
    lock: &'a RobustLock,
    /// Whether the lock was taken over from a dead holder, who may have left the
    /// protected data half-updated.
    pub recovered_from: Option<i32>,
}

impl RobustLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        RobustLock {
            owner: OwnerWord::new(),
        }
    }

    /// Takes the lock, waiting while a live thread holds it; a dead holder's lock is taken
    /// over and the guard says so (the data it guards may be half updated).
    pub fn lock(&self) -> RobustGuard<'_> {
        let mut recovered_from = None;
        // Lock owners are threads, not processes: threads of one process exclude each
        // other too. The data is repaired by the new holder, under the lock.
        let claimed = self.owner.lock_thread(sys::gettid(), |dead| {
            let freed = self.owner.free_from_dead(dead, || {});
            if freed {
                log::warn!("took over a shared lock held by thread {dead}, which has exited");
                recovered_from = Some(dead);
            }
            freed
        });
        // A second guard would free the lock under the first one.
        assert!(
            claimed == Claimed::Now,
            "a thread took a shared lock it already holds: it does not nest"
        );
        RobustGuard {
            lock: self,
            recovered_from,
        }
    }
}

impl Drop for RobustGuard<'_> {
    fn drop(&mut self) {
        self.lock.owner.unlock();
    }
}

/// A fixed-size, NUL-padded name stored in shared memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmName([u8; ShmName::CAPACITY]);

// SAFETY: plain bytes.
unsafe impl ShmSafe for ShmName {}

impl ShmName {
    /// Longest name, as DPDK's `RTE_MEMZONE_NAMESIZE` less its NUL.
    pub const CAPACITY: usize = 32;

    /// No name: an unused slot.
    pub const EMPTY: ShmName = ShmName([0; Self::CAPACITY]);

    /// `name` as stored, checked: 1 to 31 bytes, no control characters.
    pub fn new(name: &str) -> crate::Result<Self> {
        let bad = |why| crate::Error::BadName {
            name: name.into(),
            why,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() >= Self::CAPACITY {
            return Err(bad("names have at most 31 bytes"));
        }
        if name.bytes().any(|b| b == 0 || b.is_ascii_control()) {
            return Err(bad("it contains control characters"));
        }
        let mut n = [0u8; Self::CAPACITY];
        n[..name.len()].copy_from_slice(name.as_bytes());
        Ok(ShmName(n))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        std::str::from_utf8(&self.0[..len]).unwrap_or("<invalid>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_taken_over_from_a_dead_holder() {
        // No thread has this id: a holder that has exited.
        let l = RobustLock {
            owner: OwnerWord::held_by(i32::MAX - 7),
        };
        let g = l.lock();
        assert_eq!(g.recovered_from, Some(i32::MAX - 7));
        drop(g);
        assert!(l.lock().recovered_from.is_none());
    }

    #[test]
    #[should_panic(expected = "does not nest")]
    fn a_thread_taking_a_lock_it_holds_is_stopped_not_left_waiting() {
        let l = RobustLock::new();
        let _g = l.lock();
        let _again = l.lock();
    }

    #[test]
    fn lock_excludes_threads() {
        let l = RobustLock::new();
        crate::owner::tests::assert_excludes_four_threads(move |add| {
            let _g = l.lock();
            add();
        });
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            ShmName::new("ring_a").map(|n| n.as_str().to_string()).ok(),
            Some("ring_a".into())
        );
        assert!(ShmName::new("").is_err());
        assert!(ShmName::new(&"x".repeat(32)).is_err());
        assert!(ShmName::new("a\nb").is_err());
    }
}
