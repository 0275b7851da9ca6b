//! Where a pool's objects lie in its memzone: no object crosses a page (see the module
//! doc of `mempool`).

pub(super) fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// Where a pool's objects lie: packed from `start` up to the next page boundary, then
/// `per_page` to a page, each page's left-over bytes unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(super) struct ObjLayout {
    start: u64,
    elt: u64,
    page: u64,
    /// Objects before the first page boundary at or after `start`.
    first: u64,
    /// Objects per page; 0 when an object is larger than a page (then they are packed).
    per_page: u64,
}

impl ObjLayout {
    pub(super) fn new(start: u64, elt: u64, page: u64) -> Self {
        let per_page = if elt <= page { page / elt } else { 0 };
        let first = if per_page == 0 {
            0
        } else {
            (align_up(start, page) - start) / elt
        };
        ObjLayout {
            start,
            elt,
            page,
            first,
            per_page,
        }
    }

    /// Bytes from `start` that `n` objects may need wherever `start` falls in a page.
    pub(super) fn span_bound(n: u64, elt: u64, page: u64) -> u64 {
        let waste = if elt <= page {
            // Each boundary wastes less than one object; there are at most this many.
            (n / (page / elt) + 2) * elt
        } else {
            0
        };
        n * elt + waste
    }

    pub(super) fn addr(&self, i: u64) -> u64 {
        if self.per_page == 0 || i < self.first {
            return self.start + i * self.elt;
        }
        let j = i - self.first;
        align_up(self.start, self.page)
            + (j / self.per_page) * self.page
            + (j % self.per_page) * self.elt
    }

    /// The index of the object starting at `addr`, if one does.
    pub(super) fn index(&self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.start)?;
        if self.per_page == 0 || off < self.first * self.elt {
            return off.is_multiple_of(self.elt).then_some(off / self.elt);
        }
        let off = addr.checked_sub(align_up(self.start, self.page))?;
        let (page, in_page) = (off / self.page, off % self.page);
        let slot = in_page / self.elt;
        (in_page.is_multiple_of(self.elt) && slot < self.per_page)
            .then_some(self.first + page * self.per_page + slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 2 << 20;

    #[test]
    fn no_object_crosses_a_page_and_every_index_maps_back() {
        for (start, elt) in [
            (PAGE * 3 + 4160, 2304),
            (PAGE, 2304),
            (PAGE + 64, 64),
            (4096, 192),
        ] {
            let l = ObjLayout::new(start, elt, PAGE);
            let n = 5000;
            let mut prev_end = start;
            for i in 0..n {
                let a = l.addr(i);
                assert!(a >= prev_end, "object {i} overlaps the one before");
                assert_eq!(
                    a / PAGE,
                    (a + elt - 1) / PAGE,
                    "object {i} at {a:#x} crosses a page"
                );
                assert_eq!(l.index(a), Some(i));
                assert_eq!(l.index(a + 8), None);
                prev_end = a + elt;
            }
            assert!(prev_end - start <= ObjLayout::span_bound(n, elt, PAGE));
        }
    }

    #[test]
    fn objects_larger_than_a_page_are_packed() {
        let l = ObjLayout::new(PAGE + 64, PAGE + 128, PAGE);
        assert_eq!(l.addr(2), PAGE + 64 + 2 * (PAGE + 128));
        assert_eq!(l.index(PAGE + 64 + PAGE + 128), Some(1));
        assert_eq!(ObjLayout::span_bound(3, PAGE + 128, PAGE), 3 * (PAGE + 128));
    }

    #[test]
    fn an_address_before_the_pool_is_not_an_object() {
        let l = ObjLayout::new(PAGE + 64, 2304, PAGE);
        assert_eq!(l.index(PAGE), None);
        assert_eq!(l.index(2 * PAGE - 1), None);
    }
}
