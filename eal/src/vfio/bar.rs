//! A BAR mapped into this process, with volatile register access.

use super::*;

/// A BAR mapped into this process. Register access is volatile and little-endian (x86).
pub struct Bar {
    pub(super) base: *mut u8,
    pub(super) len: usize,
    /// A register file in shared memory that a device model serves (tests), not MMIO.
    pub(super) emulated: bool,
}

// SAFETY: MMIO registers may be accessed from any thread; accesses are volatile.
unsafe impl Send for Bar {}
// SAFETY: as above; synchronisation is the device protocol's business.
unsafe impl Sync for Bar {}

macro_rules! bar_access {
    ($read:ident, $write:ident, $t:ty) => {
        /// Reads the register at byte offset `off` (volatile).
        #[inline]
        pub fn $read(&self, off: usize) -> $t {
            assert!(
                off + std::mem::size_of::<$t>() <= self.len,
                "BAR access out of range"
            );
            // SAFETY: in range of the mapping (checked), naturally aligned by the callers'
            // register layouts.
            unsafe { std::ptr::read_volatile(self.base.add(off) as *const $t) }
        }
        /// Writes the register at byte offset `off` (volatile).
        #[inline]
        pub fn $write(&self, off: usize, v: $t) {
            assert!(
                off + std::mem::size_of::<$t>() <= self.len,
                "BAR access out of range"
            );
            // SAFETY: as in the read.
            unsafe { std::ptr::write_volatile(self.base.add(off) as *mut $t, v) }
        }
    };
}

impl Bar {
    bar_access!(read8, write8, u8);
    bar_access!(read16, write16, u16);
    bar_access!(read32, write32, u32);
    bar_access!(read64, write64, u64);

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Reads a clear-on-read register (statistics, interrupt causes). The device clears it
    /// on the read; an emulated register file has no read side effects, so the clearing is
    /// done here, atomically against the model's updates.
    pub fn read32_clear(&self, off: usize) -> u32 {
        if !self.emulated {
            return self.read32(off);
        }
        assert!(
            off + 4 <= self.len && off.is_multiple_of(4),
            "BAR access out of range"
        );
        // SAFETY: in range and aligned (checked); the model updates the word atomically too.
        let word = unsafe { &*(self.base.add(off) as *const std::sync::atomic::AtomicU32) };
        word.swap(0, std::sync::atomic::Ordering::AcqRel)
    }

    /// Maps `len` bytes of the register file a device model serves at `path` (tests: the
    /// ixgbe PMD's `net_ixgbe_model` ports). Every process of the group maps the same file.
    pub fn map_emulated(path: &std::path::Path, len: usize) -> io::Result<Bar> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        if (f.metadata()?.len() as usize) < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is smaller than a {len}-byte register file",
                    path.display()
                ),
            ));
        }
        // SAFETY: a fresh shared mapping of the file, at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Bar {
            base: p as *mut u8,
            len,
            emulated: true,
        })
    }

    /// Address of the register at `off`, for hot paths that keep a pointer.
    pub fn ptr(&self, off: usize) -> *mut u8 {
        assert!(off < self.len, "BAR offset out of range");
        // SAFETY: in range of the mapping.
        unsafe { self.base.add(off) }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}
