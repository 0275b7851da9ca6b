//! The shared config: one file in the runtime dir, mapped by every process of a group.
//!
//! It holds no pointer to itself, so each process may map it wherever it likes; the
//! addresses it stores point into the group's memory range, which every process maps at
//! the same place. The primary writes `magic` last; secondaries wait for it.

use crate::heap::HeapTable;
use crate::lcore::MAX_LCORE;
use crate::memzone::MemzoneTable;
use crate::owner::OwnerWord;
use crate::shm::{RobustLock, ShmSafe};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Written last by the primary: a secondary maps the config only once it reads this.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RPMDCFG1");
/// Most memory segments (files) a group maps.
pub const MAX_SEGMENTS: usize = 64;
/// Most pages whose IOVA is recorded (128 GiB of 2 MiB pages).
pub const MAX_PAGES: usize = 65536;

/// How devices address the group's memory.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IovaMode {
    /// IOVA = virtual address (an IOMMU maps it, or there is no DMA).
    Va = 0,
    /// IOVA = physical address, recorded per page.
    Pa = 1,
}

/// One memory file of the group, mapped at `base_va + offset` in every process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    /// Offset of the segment from the start of the range; also selects the file `map_<n>`.
    pub offset: u64,
    /// Bytes mapped from the file.
    pub len: u64,
    /// NUMA node of its pages (`u32::MAX`: not bound).
    pub socket: u32,
    /// Padding to keep the layout explicit.
    pub _pad: u32,
}

/// Who holds an lcore: an owner word naming a process of the group.
#[repr(C)]
#[derive(Debug, Default)]
pub struct LcoreSlot {
    /// The process holding the lcore (ARCHITECTURE.md, rule 4).
    pub owner: OwnerWord,
    /// 1 when the owner is the primary, 2 for a secondary (for messages).
    pub role: AtomicI32,
}

/// The group's shared config: one file every process maps, written by the primary.
#[repr(C)]
pub struct SharedConfig {
    /// [`MAGIC`] once the primary has filled the rest.
    pub magic: AtomicU64,
    /// [`layout_hash`] of the primary's binary: a secondary refuses another layout.
    pub layout_hash: u64,
    /// The primary's crate version, for the mismatch message.
    pub version: [u8; 16],
    /// The primary's pid.
    pub primary_pid: AtomicI32,
    /// [`IovaMode`] as its number.
    pub iova_mode: u32,
    /// TSC ticks per second, calibrated once by the primary.
    pub tsc_hz: u64,
    /// Start of the group's memory range, the same address in every process.
    pub base_va: u64,
    /// Length of that range in bytes.
    pub va_len: u64,
    /// Size of the pages behind it (2 MiB hugepages, or 4 KiB with `--no-huge`).
    pub page_size: u64,
    /// 1 when the memory files are in `/dev/shm` (`--no-huge`).
    pub no_huge: u32,
    /// How many entries of `segments` are in use.
    pub n_segments: u32,
    /// Path of the memory files less their number, e.g. `/dev/hugepages/rpmdmap_`.
    pub file_stem: [u8; 256],
    /// The memory files, in address order.
    pub segments: [Segment; MAX_SEGMENTS],
    /// Which process holds each lcore.
    pub lcores: [LcoreSlot; MAX_LCORE],
    /// Guards `heap` and `memzones` together.
    pub mem_lock: RobustLock,
    /// Unnamed allocations; only under `mem_lock` (see [`SharedConfig::with_mem`]).
    pub heap: UnsafeCell<HeapTable>,
    /// Named zones; only under `mem_lock`.
    pub memzones: UnsafeCell<MemzoneTable>,
    /// How many entries of `iova` are in use.
    pub n_pages: u64,
    /// Each page's IOVA, in address order (IOVA mode PA; equal to the address in VA).
    pub iova: [u64; MAX_PAGES],
}

// SAFETY: repr(C); integers, atomics, byte arrays, and the heap and memzone tables, which
// are ShmSafe themselves. The UnsafeCells are only accessed under `mem_lock`.
unsafe impl ShmSafe for SharedConfig {}
// SAFETY: all shared mutation goes through atomics or happens under `mem_lock`.
unsafe impl Sync for SharedConfig {}

/// The crate version, as stored in the config and compared by secondaries.
pub fn version_bytes() -> [u8; 16] {
    let mut v = [0u8; 16];
    let s = env!("CARGO_PKG_VERSION").as_bytes();
    v[..s.len().min(16)].copy_from_slice(&s[..s.len().min(16)]);
    v
}

/// A recorded version as text.
pub fn version_str(v: &[u8; 16]) -> String {
    String::from_utf8_lossy(v)
        .trim_end_matches('\0')
        .to_string()
}

/// A hash of the config's layout: two binaries agree on it only if they agree on the
/// sizes of everything they share.
pub const fn layout_hash() -> u64 {
    let sizes = [
        std::mem::size_of::<SharedConfig>() as u64,
        std::mem::size_of::<HeapTable>() as u64,
        std::mem::size_of::<MemzoneTable>() as u64,
        std::mem::size_of::<crate::ring::RingHeader>() as u64,
        std::mem::size_of::<crate::mempool::MempoolHeader>() as u64,
        MAX_SEGMENTS as u64,
        MAX_LCORE as u64,
    ];
    // FNV-1a over the sizes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < sizes.len() {
        h ^= sizes[i];
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

impl SharedConfig {
    /// Whether the primary has finished writing the config.
    pub fn is_ready(&self) -> bool {
        self.magic.load(Ordering::Acquire) == MAGIC
    }

    /// The memory files' path less their number.
    pub fn file_stem(&self) -> String {
        let len = self.file_stem.iter().position(|b| *b == 0).unwrap_or(256);
        String::from_utf8_lossy(&self.file_stem[..len]).into_owned()
    }

    /// The memory files in use.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.n_segments as usize]
    }

    /// How devices address the group's memory.
    pub fn iova_mode(&self) -> IovaMode {
        if self.iova_mode == IovaMode::Pa as u32 {
            IovaMode::Pa
        } else {
            IovaMode::Va
        }
    }

    /// IOVA of a virtual address in the group's range.
    pub fn virt_to_iova(&self, va: u64) -> u64 {
        match self.iova_mode() {
            IovaMode::Va => va,
            IovaMode::Pa => {
                let off = va - self.base_va;
                let page = (off / self.page_size) as usize;
                self.iova[page] + off % self.page_size
            }
        }
    }

    /// Whether `va..va+len` is contiguous in IOVA space.
    pub fn iova_contiguous(&self, va: u64, len: u64) -> bool {
        if self.iova_mode() == IovaMode::Va || len == 0 {
            return true;
        }
        let first = (va - self.base_va) / self.page_size;
        let last = (va + len - 1 - self.base_va) / self.page_size;
        (first..last).all(|p| self.iova[p as usize + 1] == self.iova[p as usize] + self.page_size)
    }

    /// Runs `f` with the heap and memzone tables, under the memory lock.
    pub fn with_mem<R>(&self, f: impl FnOnce(&mut HeapTable, &mut MemzoneTable) -> R) -> R {
        let guard = self.mem_lock.lock();
        if let Some(pid) = guard.recovered_from {
            log::warn!("the memory lock was held by thread {pid} when it died; the memzone table may hold one half-made entry");
        }
        // SAFETY: the memory lock is held, so no other thread of any process of the group
        // touches the tables until the guard drops at the end of this function.
        let (heap, zones) = unsafe { (&mut *self.heap.get(), &mut *self.memzones.get()) };
        f(heap, zones)
    }
}
