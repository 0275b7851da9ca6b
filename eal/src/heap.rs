//! The shared heap: first-fit allocation over the group's memory range.
//!
//! The bookkeeping lives in a table in the shared config, not in headers inside the
//! memory itself, so an allocation's bytes are all the caller's (DMA rings want that),
//! and a process that dies mid-update can damage at most the table, never the data: each
//! change saves the table first, and a change its process died in is undone by the next
//! one (see `HeapTable::changing`). Callers hold the config's memory lock around every
//! call.

use crate::shm::ShmSafe;
use std::sync::atomic::{compiler_fence, Ordering};

/// Most blocks (free and used) the table can describe.
pub const MAX_HEAP_ELEMS: usize = 8192;
/// Allocations start and end on cache lines, so two never share one.
pub const MIN_ALIGN: u64 = 64;

/// One block of the shared heap: `len` bytes from `start`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapElem {
    /// First address of the block.
    pub start: u64,
    /// Bytes in the block.
    pub len: u64,
    /// 1 when allocated, 0 when free.
    pub used: u64,
}

/// Where a block would go: see [`HeapTable::place`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    elem: usize,
    /// The block's first address.
    pub start: u64,
    size: u64,
}

/// Blocks sorted by address, covering the whole range without gaps.
#[repr(C)]
pub struct HeapTable {
    n: u64,
    elems: [HeapElem; MAX_HEAP_ELEMS],
    /// 1 while a change is under way: the table before it is in `saved_n` and `saved`. A
    /// process killed with the memory lock in the middle of a change (a block split, or
    /// shifted elements, half written) leaves it at 1, and the next change or read puts the
    /// saved table back.
    changing: u64,
    saved_n: u64,
    saved: [HeapElem; MAX_HEAP_ELEMS],
}

// SAFETY: plain integers describing addresses in the shared range.
unsafe impl ShmSafe for HeapTable {}

/// Free space, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Free bytes in all.
    pub free: u64,
    /// The largest free block, in bytes.
    pub largest_free: u64,
    /// How many blocks are allocated.
    pub used_blocks: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

impl HeapTable {
    /// Makes the whole `start..start+len` one free block.
    pub fn init(&mut self, start: u64, len: u64) {
        self.n = 1;
        self.elems[0] = HeapElem {
            start,
            len,
            used: 0,
        };
        self.changing = 0;
    }

    /// The blocks: those saved before a change a dead process left unfinished, if any.
    fn elems(&self) -> &[HeapElem] {
        if self.changing != 0 {
            &self.saved[..self.saved_n as usize]
        } else {
            &self.elems[..self.n as usize]
        }
    }

    /// Puts back the table saved before a change whose process died in it (nothing
    /// otherwise). A process killed here leaves `changing` at 1: the next one does it again.
    fn undo_dead_change(&mut self) {
        if self.changing != 0 {
            let n = self.saved_n as usize;
            self.elems[..n].copy_from_slice(&self.saved[..n]);
            self.n = self.saved_n;
            // The fences keep the compiler from moving the flag's store across the
            // table's: a kill must find them in this order.
            compiler_fence(Ordering::SeqCst);
            self.changing = 0;
            compiler_fence(Ordering::SeqCst);
            log::warn!("the heap table was being changed by a process that died: change undone");
        }
    }

    /// Saves the table, then says that a change is under way.
    fn begin_change(&mut self) {
        let n = self.n as usize;
        self.saved[..n].copy_from_slice(&self.elems[..n]);
        self.saved_n = self.n;
        crate::store_point!("heap.saved");
        compiler_fence(Ordering::SeqCst);
        self.changing = 1;
        compiler_fence(Ordering::SeqCst);
        crate::store_point!("heap.changing");
    }

    /// Says that the change is complete.
    fn end_change(&mut self) {
        compiler_fence(Ordering::SeqCst);
        self.changing = 0;
        compiler_fence(Ordering::SeqCst);
        crate::store_point!("heap.changing");
    }

    fn insert(&mut self, at: usize, e: HeapElem) -> bool {
        let n = self.n as usize;
        if n == MAX_HEAP_ELEMS {
            return false;
        }
        self.elems.copy_within(at..n, at + 1);
        crate::store_point!("heap.elems");
        self.elems[at] = e;
        crate::store_point!("heap.elem");
        self.n += 1;
        crate::store_point!("heap.n");
        true
    }

    fn remove(&mut self, at: usize) {
        let n = self.n as usize;
        self.elems.copy_within(at + 1..n, at);
        crate::store_point!("heap.elems");
        self.n -= 1;
        crate::store_point!("heap.n");
    }

    /// Allocates `size` bytes aligned to `align` (a power of two). `acceptable` may refuse
    /// a candidate range (IOVA-contiguity); the search then moves on to the next multiple of
    /// `step` (the page size, a power of two).
    pub fn alloc(
        &mut self,
        size: u64,
        align: u64,
        step: u64,
        acceptable: &dyn Fn(u64, u64) -> bool,
    ) -> Option<u64> {
        let place = self.place(size, align, step, acceptable)?;
        self.carve(place)
    }

    /// Where [`alloc`](Self::alloc) would put the block, changing nothing (but undoing a
    /// dead process's change): a caller that must record the block before it is allocated
    /// (a memzone) learns its address first, then [`carve`](Self::carve)s it.
    pub fn place(
        &mut self,
        size: u64,
        align: u64,
        step: u64,
        acceptable: &dyn Fn(u64, u64) -> bool,
    ) -> Option<Place> {
        self.undo_dead_change();
        let size = align_up(size.max(1), MIN_ALIGN);
        let align = align.max(MIN_ALIGN);
        for i in 0..self.n as usize {
            let e = self.elems[i];
            if e.used != 0 || e.len < size {
                continue;
            }
            let end = e.start + e.len;
            let mut cand = align_up(e.start, align);
            while cand + size <= end {
                if acceptable(cand, size) {
                    return Some(Place {
                        elem: i,
                        start: cand,
                        size,
                    });
                }
                // The next page boundary (both are powers of two, so it is aligned too).
                cand = align_up(cand + 1, step.max(align));
            }
        }
        None
    }

    /// Allocates the block at `place`, found by [`place`](Self::place) with no change to
    /// the table since: splits its free block into \[before\]\[the block, used\]\[after\].
    /// `None` when the table has no room for the splits.
    pub fn carve(&mut self, place: Place) -> Option<u64> {
        let Place {
            elem: i,
            start: cand,
            size,
        } = place;
        let e = self.elems[i];
        let before = cand - e.start;
        let after = e.start + e.len - (cand + size);
        // Make sure the table has room for both splits before changing anything.
        let extra = (before > 0) as u64 + (after > 0) as u64;
        if self.n + extra > MAX_HEAP_ELEMS as u64 {
            return None;
        }
        self.begin_change();
        let mut at = i;
        if before > 0 {
            self.elems[i].len = before;
            crate::store_point!("heap.elem");
            at += 1;
            self.insert(
                at,
                HeapElem {
                    start: cand,
                    len: size,
                    used: 1,
                },
            );
        } else {
            self.elems[i] = HeapElem {
                start: cand,
                len: size,
                used: 1,
            };
            crate::store_point!("heap.elem");
        }
        if after > 0 {
            self.insert(
                at + 1,
                HeapElem {
                    start: cand + size,
                    len: after,
                    used: 0,
                },
            );
        }
        self.end_change();
        Some(cand)
    }

    /// Frees the block that starts at `addr`; returns its length, or `None` if no used
    /// block starts there.
    pub fn free(&mut self, addr: u64) -> Option<u64> {
        self.undo_dead_change();
        let i = self
            .elems()
            .binary_search_by_key(&addr, |e| e.start)
            .ok()
            .filter(|i| self.elems[*i].used != 0)?;
        let len = self.elems[i].len;
        self.begin_change();
        self.elems[i].used = 0;
        crate::store_point!("heap.elem");
        let mut i = i;
        if i > 0 && self.elems[i - 1].used == 0 {
            self.elems[i - 1].len += self.elems[i].len;
            crate::store_point!("heap.elem");
            self.remove(i);
            i -= 1;
        }
        if i + 1 < self.n as usize && self.elems[i + 1].used == 0 {
            self.elems[i].len += self.elems[i + 1].len;
            crate::store_point!("heap.elem");
            self.remove(i + 1);
        }
        self.end_change();
        Some(len)
    }

    /// Free space, for error messages.
    pub fn stats(&self) -> HeapStats {
        let free = self.elems().iter().filter(|e| e.used == 0);
        HeapStats {
            free: free.clone().map(|e| e.len).sum(),
            largest_free: free.map(|e| e.len).max().unwrap_or(0),
            used_blocks: self.elems().iter().filter(|e| e.used != 0).count() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(start: u64, len: u64) -> Box<HeapTable> {
        // SAFETY: HeapTable is plain integers; all zeroes is a valid (empty) value.
        let mut t: Box<HeapTable> = unsafe { Box::new_zeroed().assume_init() };
        t.init(start, len);
        t
    }

    const ANY: &dyn Fn(u64, u64) -> bool = &|_, _| true;

    #[test]
    fn a_change_whose_process_died_is_undone() {
        let mut t = table(0x1000, 0x10000);
        let a = t.alloc(100, 64, 64, ANY).expect("a");
        let before = t.stats();
        // A process started a split of the free block and died: the rest is gone.
        t.begin_change();
        t.elems[1].len = 64;
        assert_eq!(t.stats(), before, "reads see the table as it was");
        assert_eq!(t.alloc(100, 64, 64, ANY), Some(a + 128));
        t.free(a);
        t.free(a + 128);
        assert_eq!(t.stats().free, 0x10000, "nothing lost");
    }

    #[test]
    fn alloc_aligns_and_frees_coalesce() {
        let mut t = table(0x1000, 0x10000);
        let a = t.alloc(100, 64, 64, ANY).expect("a");
        assert_eq!(a, 0x1000);
        let b = t.alloc(10, 0x4000, 64, ANY).expect("b");
        assert_eq!(b % 0x4000, 0);
        let c = t.alloc(1000, 64, 64, ANY).expect("c");
        assert!(c > a && c != b);
        assert_eq!(t.free(b), Some(64));
        assert_eq!(t.free(b), None, "double free refused");
        t.free(a);
        t.free(c);
        assert_eq!(
            t.stats(),
            HeapStats {
                free: 0x10000,
                largest_free: 0x10000,
                used_blocks: 0
            }
        );
        assert_eq!(t.n, 1);
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut t = table(0, 4096);
        assert!(t.alloc(4096, 64, 64, ANY).is_some());
        assert!(t.alloc(1, 64, 64, ANY).is_none());
    }

    #[test]
    fn unacceptable_ranges_are_skipped() {
        let mut t = table(0, 0x10000);
        // Pretend a "page" boundary at 0x4000 breaks contiguity.
        let ok = |s: u64, l: u64| s / 0x4000 == (s + l - 1) / 0x4000;
        let a = t.alloc(0x3000, 64, 0x1000, &ok).expect("fits in a page");
        let b = t
            .alloc(0x3000, 64, 0x1000, &ok)
            .expect("moved to the next page");
        assert_eq!((a, b), (0, 0x4000));
    }

    #[test]
    fn many_small_allocations_and_frees_in_random_order() {
        let mut t = table(0, 1 << 24);
        let mut addrs: Vec<u64> = (0..1000)
            .map(|i| t.alloc(64 + i % 300, 64, 64, ANY).expect("alloc"))
            .collect();
        // A fixed shuffle: every 7th, then the rest.
        addrs.sort_by_key(|a| (a / 64) % 7);
        for a in addrs {
            assert!(t.free(a).is_some());
        }
        assert_eq!(t.stats().free, 1 << 24);
        assert_eq!(t.n, 1);
    }
}
