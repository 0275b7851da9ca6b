//! BAR 0 of one port: the register file, as 32-bit words that the model and the drivers
//! access atomically. Behind a shared file every process of the group maps it (the PMD's
//! `net_ixgbe_model` ports); behind vfio-user it is private memory that only the model
//! touches, each driver access arriving as a message.

use super::fail;
use drivers::intel::regs::ixgbe::BAR_LEN;
use memmap2::MmapMut;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Regs {
    map: MmapMut,
}

impl Regs {
    /// A register file in `path`, created (or emptied) here, that drivers map.
    pub fn shared_file(path: &str) -> Regs {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap_or_else(|e| fail(format!("{path}: {e}")));
        f.set_len(BAR_LEN as u64)
            .unwrap_or_else(|e| fail(format!("{path}: {e}")));
        // SAFETY: a file we created for this purpose; drivers access it through their own
        // mappings with single aligned word accesses, as we do.
        let map =
            unsafe { MmapMut::map_mut(&f) }.unwrap_or_else(|e| fail(format!("map {path}: {e}")));
        Regs { map }
    }

    /// A register file only the model sees (BAR 0 served over vfio-user).
    pub fn private() -> Regs {
        let map = MmapMut::map_anon(BAR_LEN).unwrap_or_else(|e| fail(format!("BAR 0: {e}")));
        Regs { map }
    }

    pub fn reg(&self, off: usize) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= BAR_LEN,
            "register {off:#x}"
        );
        // SAFETY: inside the mapping and aligned (checked); the mapping lives as long as
        // `self`; every other access to the word is a single aligned one.
        unsafe { &*(self.map.as_ptr().add(off) as *const AtomicU32) }
    }
    pub fn r(&self, off: usize) -> u32 {
        self.reg(off).load(Ordering::Acquire)
    }
    pub fn w(&self, off: usize, v: u32) {
        self.reg(off).store(v, Ordering::Release)
    }
    pub fn add(&self, off: usize, n: u32) {
        self.reg(off).fetch_add(n, Ordering::AcqRel);
    }
    /// A 64-bit counter kept in a low and a high register.
    pub fn add64(&self, off: usize, n: u64) {
        let lo = self.reg(off).fetch_add(n as u32, Ordering::AcqRel);
        let carry = (lo as u64 + (n & 0xffff_ffff)) >> 32;
        self.add(off + 4, ((n >> 32) + carry) as u32);
    }
    /// Every register back to 0 (a reset's first step).
    pub fn clear(&self) {
        for off in (0..BAR_LEN).step_by(4) {
            self.reg(off).store(0, Ordering::Relaxed);
        }
    }
}
