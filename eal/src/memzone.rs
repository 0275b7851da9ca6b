//! Memzones: named, aligned blocks of the group's memory, reserved once and found by
//! name from any process; and unnamed allocations from the same heap.

use crate::config::SharedConfig;
use crate::shm::{ShmName, ShmSafe};
use crate::{Error, Result};
use std::ptr::NonNull;
use std::sync::atomic::{compiler_fence, Ordering};

/// Most memzones a group can have, as DPDK's default `RTE_MAX_MEMZONE`.
pub const MAX_MEMZONES: usize = 2560;

bitflags::bitflags! {
    /// How a memzone must be laid out.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct MemzoneFlags: u32 {
        /// The whole zone must be contiguous in IOVA space (for DMA rings and buffers).
        const IOVA_CONTIG = 1;
    }
}

/// One entry of the memzone table, in shared memory.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemzoneRecord {
    name: ShmName,
    addr: u64,
    iova: u64,
    len: u64,
    flags: u32,
    /// 0 free, [`IN_USE`], [`FREEING`] or [`RESERVING`].
    in_use: u32,
}

/// A record that names a live zone.
const IN_USE: u32 = 1;
/// A record whose zone is being freed: its heap block may be free already. A process
/// killed there leaves it so; the next change to the tables finishes the free
/// ([`MemzoneTable::finish_dead_frees`]), and nobody finds the zone meanwhile.
const FREEING: u32 = 2;
/// A record whose zone is being reserved: it names the heap block before the heap
/// allocates it. A process killed there leaves it so; the next change to the tables frees
/// the block if the heap allocated it, then the record.
const RESERVING: u32 = 3;

/// Every memzone of the group; guarded by the config's memory lock.
#[repr(C)]
pub struct MemzoneTable {
    zones: [MemzoneRecord; MAX_MEMZONES],
}

// SAFETY: plain records of names, lengths and addresses in the shared range.
unsafe impl ShmSafe for MemzoneTable {}

/// A memzone as seen by one process: where it is and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memzone {
    name: ShmName,
    addr: u64,
    iova: u64,
    len: u64,
    flags: MemzoneFlags,
}

impl Memzone {
    /// The zone's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
    /// Start address, the same in every process of the group.
    pub fn addr(&self) -> u64 {
        self.addr
    }
    /// The IOVA of its first byte, for devices.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// How it was reserved.
    pub fn flags(&self) -> MemzoneFlags {
        self.flags
    }
    /// Its first byte as a pointer, valid in every process of the group.
    pub fn as_ptr<T>(&self) -> *mut T {
        self.addr as *mut T
    }

    fn from_record(r: &MemzoneRecord) -> Self {
        Memzone {
            name: r.name,
            addr: r.addr,
            iova: r.iova,
            len: r.len,
            flags: MemzoneFlags::from_bits_truncate(r.flags),
        }
    }
}

impl MemzoneTable {
    fn find(&self, name: &ShmName) -> Option<usize> {
        self.zones
            .iter()
            .position(|z| z.in_use == IN_USE && z.name == *name)
    }

    /// Finishes the frees and undoes the reservations their processes died in (see
    /// [`FREEING`], [`RESERVING`]): the heap block goes back if it has not yet (freeing
    /// twice is refused, so this may run again), then the record. Before any change to
    /// the heap, which might hand the block out again: until then, a used block at a
    /// reserving record's address can only be the dead reservation's.
    fn finish_dead_changes(&mut self, heap: &mut crate::heap::HeapTable) {
        for z in self
            .zones
            .iter_mut()
            .filter(|z| z.in_use == FREEING || z.in_use == RESERVING)
        {
            heap.free(z.addr);
            compiler_fence(Ordering::SeqCst);
            let what = if z.in_use == FREEING {
                "being freed by a process that died: free finished"
            } else {
                "being reserved by a process that died: reservation undone"
            };
            z.in_use = 0;
            log::warn!("memzone '{}' was {what}", z.name.as_str());
        }
    }
}

/// Reserves a zeroed memzone of `len` bytes aligned to `align` (a power of two).
pub(crate) fn reserve(
    cfg: &SharedConfig,
    name: &str,
    len: u64,
    align: u64,
    flags: MemzoneFlags,
) -> Result<Memzone> {
    let sname = ShmName::new(name)?;
    if !align.is_power_of_two() {
        return Err(Error::BadAlignment {
            what: format!("memzone '{name}'"),
            align,
        });
    }
    let contig = flags.contains(MemzoneFlags::IOVA_CONTIG);
    let zone = cfg.with_mem(|heap, table| {
        table.finish_dead_changes(heap);
        if table.find(&sname).is_some() {
            return Err(Error::MemzoneExists(name.into()));
        }
        let slot = table
            .zones
            .iter()
            .position(|z| z.in_use == 0)
            .ok_or(Error::MemzoneTableFull(MAX_MEMZONES))?;
        let ok = |va: u64, l: u64| !contig || cfg.iova_contiguous(va, l);
        let place = match heap.place(len, align, cfg.page_size, &ok) {
            Some(p) => p,
            // Say which it is: no room at all, or room but not IOVA-contiguous.
            None if contig && heap.stats().largest_free >= len + align => {
                return Err(Error::NotContiguous {
                    name: name.into(),
                    size: len,
                    page: cfg.page_size,
                })
            }
            None => return Err(no_memory(name, len, align, heap.stats())),
        };
        // The record names the block before the heap allocates it, and is marked in use
        // once complete: see RESERVING. The fences keep the compiler from reordering these
        // stores: a kill must find them in this order.
        let addr = place.start;
        let rec = &mut table.zones[slot];
        *rec = MemzoneRecord {
            name: sname,
            addr,
            iova: cfg.virt_to_iova(addr),
            len,
            flags: flags.bits(),
            in_use: 0,
        };
        compiler_fence(Ordering::SeqCst);
        crate::store_point!("memzone.record");
        rec.in_use = RESERVING;
        compiler_fence(Ordering::SeqCst);
        crate::store_point!("memzone.in_use");
        if heap.carve(place).is_none() {
            rec.in_use = 0;
            return Err(no_memory(name, len, align, heap.stats()));
        }
        compiler_fence(Ordering::SeqCst);
        rec.in_use = IN_USE;
        crate::store_point!("memzone.in_use");
        Ok(Memzone::from_record(rec))
    })?;
    // SAFETY: the zone was just carved out of the group's mapped range for this caller alone.
    unsafe { std::ptr::write_bytes(zone.as_ptr::<u8>(), 0, len as usize) };
    crate::store_point!("memzone.zeroed");
    Ok(zone)
}

fn no_memory(name: &str, len: u64, align: u64, s: crate::heap::HeapStats) -> Error {
    Error::NoMemory {
        name: name.into(),
        size: len,
        align,
        free: s.free,
        largest: s.largest_free,
    }
}

pub(crate) fn lookup(cfg: &SharedConfig, name: &str) -> Result<Memzone> {
    let sname = ShmName::new(name)?;
    cfg.with_mem(|_, table| {
        table
            .find(&sname)
            .map(|i| Memzone::from_record(&table.zones[i]))
            .ok_or_else(|| Error::MemzoneNotFound(name.into()))
    })
}

pub(crate) fn free(cfg: &SharedConfig, name: &str) -> Result<()> {
    let sname = ShmName::new(name)?;
    cfg.with_mem(|heap, table| {
        table.finish_dead_changes(heap);
        let i = table
            .find(&sname)
            .ok_or_else(|| Error::MemzoneNotFound(name.into()))?;
        // The fences keep the compiler from reordering these stores: a kill must find
        // them in this order.
        table.zones[i].in_use = FREEING;
        compiler_fence(Ordering::SeqCst);
        crate::store_point!("memzone.in_use");
        heap.free(table.zones[i].addr);
        compiler_fence(Ordering::SeqCst);
        table.zones[i].in_use = 0;
        crate::store_point!("memzone.in_use");
        Ok(())
    })
}

pub(crate) fn list(cfg: &SharedConfig) -> Vec<Memzone> {
    cfg.with_mem(|_, table| {
        table
            .zones
            .iter()
            .filter(|z| z.in_use == IN_USE)
            .map(Memzone::from_record)
            .collect()
    })
}

/// Allocates unnamed, zeroed shared memory (DPDK's `rte_zmalloc`).
pub(crate) fn malloc(cfg: &SharedConfig, size: u64, align: u64) -> Result<NonNull<u8>> {
    if !align.is_power_of_two() {
        return Err(Error::BadAlignment {
            what: format!("an allocation of {size} bytes"),
            align,
        });
    }
    let addr = cfg.with_mem(|heap, table| {
        table.finish_dead_changes(heap);
        heap.alloc(size, align, cfg.page_size, &|_, _| true)
            .ok_or_else(|| no_memory("<malloc>", size, align, heap.stats()))
    })?;
    // SAFETY: the block was just allocated for this caller alone, inside the mapped range.
    unsafe { std::ptr::write_bytes(addr as *mut u8, 0, size as usize) };
    crate::store_point!("heap.zeroed");
    NonNull::new(addr as *mut u8).ok_or(Error::NotFromHeap(0))
}

/// Frees what [`malloc`] returned.
pub(crate) fn mfree(cfg: &SharedConfig, ptr: NonNull<u8>) -> Result<()> {
    cfg.with_mem(|heap, table| {
        table.finish_dead_changes(heap);
        heap.free(ptr.as_ptr() as u64)
    })
    .map(drop)
    .ok_or(Error::NotFromHeap(ptr.as_ptr() as u64))
}
