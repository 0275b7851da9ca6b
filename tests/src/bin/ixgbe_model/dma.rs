//! The memory a port reaches by DMA: the group's hugepages (shared-file ports, as the
//! group's processes see them), or the guest memory QEMU maps over vfio-user, by IOVA
//! (guest-physical, or the virtual IOMMU's addresses when the guest uses one).
//!
//! An address outside that memory never stops the model: the lookup fails, the caller
//! drops the frame and counts it ([`Dma::errors`]), and the first few are logged.

use eal::memory::GroupMemory;
use memmap2::MmapMut;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

/// Pages whose translation the model keeps (as a device's IOTLB would): looking each DMA
/// address up costs more than the rest of a 64-byte frame's work, and a benchmark's
/// traffic source must outrun the driver.
const TLB_ENTRIES: usize = 64;
/// Bad addresses logged per port (all are counted).
const LOGGED_ERRORS: u64 = 10;

/// One DMA mapping QEMU gave: `len` bytes at `iova`, at `host` here.
struct GuestRegion {
    len: u64,
    host: usize,
}

/// A file QEMU shares (the guest's memory), mapped here once whole: behind a virtual IOMMU
/// every 4 KiB page the guest maps comes as its own region of the same file.
struct SharedFile {
    id: (u64, u64),
    map: MmapMut,
}

enum Memory {
    /// The group named by --file-prefix, attached at the first DMA, once for all the
    /// ports (a process maps the group's memory at one address).
    Group {
        prefix: String,
        mem: Arc<OnceLock<GroupMemory>>,
    },
    /// vfio-user DMA regions by IOVA, into the files they came with.
    Guest {
        regions: BTreeMap<u64, GuestRegion>,
        files: Vec<SharedFile>,
    },
}

pub struct Dma {
    memory: Memory,
    /// (IOVA of a page, its address here), by page number modulo TLB_ENTRIES; 0: none.
    tlb: [(u64, usize); TLB_ENTRIES],
    /// log2 of the translation's page size (0 until the group's memory is attached).
    page_shift: u32,
    /// DMA attempts outside the memory: frames dropped, descriptors not written.
    pub errors: u64,
}

impl Dma {
    /// DMA into group `prefix`'s memory, attached once into `mem` for all the ports.
    pub fn group(prefix: String, mem: Arc<OnceLock<GroupMemory>>) -> Dma {
        Dma {
            memory: Memory::Group { prefix, mem },
            tlb: [(0, 0); TLB_ENTRIES],
            page_shift: 0,
            errors: 0,
        }
    }

    pub fn guest() -> Dma {
        Dma {
            memory: Memory::Guest {
                regions: BTreeMap::new(),
                files: Vec::new(),
            },
            tlb: [(0, 0); TLB_ENTRIES],
            page_shift: 12,
            errors: 0,
        }
    }

    /// Takes `len` bytes of `fd` at `offset` as the memory at `iova`.
    pub fn map(&mut self, iova: u64, len: u64, fd: &File, offset: u64) -> std::io::Result<()> {
        let Memory::Guest { regions, files } = &mut self.memory else {
            return Err(std::io::Error::other("not a vfio-user port"));
        };
        let meta = fd.metadata()?;
        let id = (meta.dev(), meta.ino());
        if offset + len > meta.len() {
            return Err(std::io::Error::other("DMA region past the end of its file"));
        }
        let file = match files.iter().position(|f| f.id == id) {
            Some(i) => &files[i],
            None => {
                // SAFETY: QEMU's guest memory, shared with us for DMA; the guest and QEMU
                // access it concurrently, as they would a device's DMA, and the model
                // accesses descriptors with single aligned accesses.
                let map = unsafe { MmapMut::map_mut(fd)? };
                files.push(SharedFile { id, map });
                &files[files.len() - 1]
            }
        };
        let host = file.map.as_ptr() as usize + offset as usize;
        regions.insert(iova, GuestRegion { len, host });
        self.tlb = [(0, 0); TLB_ENTRIES];
        Ok(())
    }

    /// Forgets the mappings inside `len` bytes at `iova`.
    pub fn unmap(&mut self, iova: u64, len: u64) {
        if let Memory::Guest { regions, .. } = &mut self.memory {
            regions.retain(|&start, r| start + r.len <= iova || start >= iova + len);
        }
        self.tlb = [(0, 0); TLB_ENTRIES];
    }

    /// Forgets every guest mapping (the client went away).
    pub fn unmap_all(&mut self) {
        if let Memory::Guest { regions, files } = &mut self.memory {
            regions.clear();
            files.clear();
        }
        self.tlb = [(0, 0); TLB_ENTRIES];
    }

    #[cold]
    #[inline(never)]
    fn lookup(&mut self, page: u64, page_size: u64) -> Option<usize> {
        match &mut self.memory {
            Memory::Group { mem, .. } => {
                mem.get()?.iova_to_virt(page, page_size).map(|p| p as usize)
            }
            Memory::Guest { regions, .. } => guest_host(regions, page, page_size),
        }
    }

    /// Maps the group's memory, on the first DMA.
    #[cold]
    #[inline(never)]
    fn attach(&mut self) -> Option<()> {
        if let Memory::Group { prefix, mem } = &mut self.memory {
            if mem.get().is_none() {
                let m = GroupMemory::attach(prefix)
                    .map_err(|e| eprintln!("ixgbe_model: DMA to group '{prefix}': {e}"))
                    .ok()?;
                let _ = mem.set(m);
            }
            self.page_shift = mem.get()?.page_size().trailing_zeros();
        }
        Some(())
    }

    /// Where `len` bytes at `iova` are here, if they lie in one page of the memory.
    #[inline]
    fn virt(&mut self, iova: u64, len: usize) -> Option<*mut u8> {
        if self.page_shift == 0 {
            self.attach()?;
        }
        // Page sizes are powers of two: shifts, not divisions, on this path.
        let page_size = 1u64 << self.page_shift;
        let off = iova & (page_size - 1);
        if off + len as u64 > page_size {
            return self.spanning(iova, len);
        }
        let page = iova - off;
        let slot = (iova >> self.page_shift) as usize % TLB_ENTRIES;
        if self.tlb[slot].1 == 0 || self.tlb[slot].0 != page {
            let va = self.lookup(page, page_size)?;
            self.tlb[slot] = (page, va);
        }
        Some((self.tlb[slot].1 + off as usize) as *mut u8)
    }

    /// A buffer across page boundaries: only guest memory may hold one (see
    /// [`guest_host`]); the group's memory keeps buffers inside pages.
    #[cold]
    fn spanning(&mut self, iova: u64, len: usize) -> Option<*mut u8> {
        let Memory::Guest { regions, .. } = &self.memory else {
            return None;
        };
        guest_host(regions, iova, len as u64).map(|h| h as *mut u8)
    }

    #[cold]
    fn bad(&mut self, what: &str, iova: u64, len: usize) {
        self.errors += 1;
        if self.errors <= LOGGED_ERRORS {
            eprintln!(
                "ixgbe_model: DMA {what} at {iova:#x}+{len} is outside the memory the device was given: dropped (counted)"
            );
        }
    }

    /// `len` bytes at `iova`, or None (logged and counted) when they are not DMA memory.
    pub fn slice(&mut self, iova: u64, len: usize) -> Option<&mut [u8]> {
        let Some(p) = self.virt(iova, len) else {
            self.bad("buffer", iova, len);
            return None;
        };
        // SAFETY: `len` bytes of DMA memory (checked by the lookup), a buffer the driver
        // gave the device; the driver does not touch it until the device hands it back.
        Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }

    /// Descriptor i of a ring at `base`, as two quadwords, or None (logged and counted).
    pub fn desc(&mut self, base: u64, i: u32) -> Option<&[AtomicU64; 2]> {
        let iova = base + 16 * i as u64;
        let Some(p) = self.virt(iova, 16) else {
            self.bad("descriptor", iova, 16);
            return None;
        };
        // SAFETY: 16 aligned bytes of DMA memory (rings are 128-byte aligned); drivers read
        // and write descriptors with single aligned accesses too.
        Some(unsafe { &*(p as *const [AtomicU64; 2]) })
    }
}

/// Where `len` bytes of guest memory at `iova` are here: in one region, or across regions
/// that follow each other in the same file (as a hugepage's 4 KiB pages behind a virtual
/// IOMMU do).
fn guest_host(regions: &BTreeMap<u64, GuestRegion>, iova: u64, len: u64) -> Option<usize> {
    let (start, r) = regions.range(..=iova).next_back()?;
    let (mut end, mut host_end) = (start + r.len, r.host + r.len as usize);
    while end < iova + len {
        let next = regions.get(&end).filter(|n| n.host == host_end)?;
        (end, host_end) = (end + next.len, host_end + next.len as usize);
    }
    Some(r.host + (iova - start) as usize)
}
