//! Time: the TSC with a calibrated frequency (the default), and the HPET where the kernel
//! lets a process map `/dev/hpet`.

use crate::{sys, Error, Result};
use std::fs::File;
use std::time::Duration;

/// Cycles of the time stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    sys::rdtsc()
}

/// Measures the TSC frequency against the monotonic clock over `over`.
pub fn calibrate_tsc(over: Duration) -> u64 {
    let (t0, c0) = (sys::monotonic_ns(), rdtsc());
    std::thread::sleep(over);
    let (t1, c1) = (sys::monotonic_ns(), rdtsc());
    let ns = (t1 - t0).max(1);
    // Round to 1 MHz: the measurement is not finer than that.
    let hz = (c1 - c0) as u128 * 1_000_000_000 / ns as u128;
    ((hz + 500_000) / 1_000_000 * 1_000_000) as u64
}

/// A counter and its frequency.
pub trait Clock {
    /// The counter now.
    fn cycles(&self) -> u64;
    /// Counts per second.
    fn hz(&self) -> u64;
}

/// The TSC.
#[derive(Debug, Clone, Copy)]
pub struct Tsc {
    /// Ticks per second.
    pub hz: u64,
}

impl Clock for Tsc {
    #[inline(always)]
    fn cycles(&self) -> u64 {
        rdtsc()
    }
    fn hz(&self) -> u64 {
        self.hz
    }
}

/// The HPET's main counter, mapped read-only from `/dev/hpet`.
pub struct Hpet {
    map: memmap2::Mmap,
    hz: u64,
}

/// Offsets in the HPET register block (IA-PC HPET specification).
const HPET_CAPABILITIES: usize = 0x00;
const HPET_COUNTER: usize = 0xf0;

impl Hpet {
    /// Maps the HPET's registers from `/dev/hpet`; the error says why it cannot.
    pub fn open() -> Result<Hpet> {
        let path = "/dev/hpet";
        let f = File::open(path).map_err(|e| {
            Error::Timer(match e.raw_os_error() {
                Some(libc::ENOENT) => "no /dev/hpet on this machine (the kernel or hypervisor exposes no HPET): use the TSC timer, the default".into(),
                Some(libc::EBUSY) => "/dev/hpet is busy: only one process may own it; use the TSC timer, the default".into(),
                Some(libc::EACCES | libc::EPERM) => "no permission to open /dev/hpet: run as root, or use the TSC timer, the default".into(),
                _ => format!("cannot open /dev/hpet: {e}; use the TSC timer, the default"),
            })
        })?;
        // SAFETY: a read-only mapping of device registers; the counter changes under us,
        // which is why it is only ever read with read_volatile.
        let map = unsafe { memmap2::MmapOptions::new().len(4096).map(&f) }
            .map_err(|e| Error::Timer(format!("cannot map /dev/hpet ({e}): the kernel may not allow mapping it (CONFIG_HPET_MMAP); use the TSC timer, the default")))?;
        let mut h = Hpet { map, hz: 0 };
        let period_fs = h.reg(HPET_CAPABILITIES) >> 32;
        if period_fs == 0 || period_fs > 100_000_000 {
            return Err(Error::Timer(format!(
                "the HPET reports an invalid period of {period_fs} fs"
            )));
        }
        h.hz = 1_000_000_000_000_000 / period_fs;
        Ok(h)
    }

    fn reg(&self, off: usize) -> u64 {
        // SAFETY: off + 8 is within the 4 KiB mapping; device registers are read volatile.
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off) as *const u64) }
    }
}

impl Clock for Hpet {
    fn cycles(&self) -> u64 {
        self.reg(HPET_COUNTER)
    }
    fn hz(&self) -> u64 {
        self.hz
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_frequency_is_plausible_and_counts() {
        let hz = calibrate_tsc(Duration::from_millis(20));
        assert!((100_000_000..20_000_000_000).contains(&hz), "{hz}");
        let t = Tsc { hz };
        let a = t.cycles();
        std::thread::sleep(Duration::from_millis(10));
        let elapsed = (t.cycles() - a) as f64 / hz as f64;
        assert!(elapsed > 0.009, "{elapsed}");
    }

    #[test]
    fn hpet_opens_or_says_why() {
        match Hpet::open() {
            Ok(h) => assert!(h.hz() > 1_000_000),
            Err(e) => assert!(e.to_string().contains("TSC"), "{e}"),
        }
    }
}
