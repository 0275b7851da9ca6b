//! Functions run on worker lcores: threads pinned to the lcore's CPUs (DPDK's
//! `rte_eal_remote_launch`), at most one at a time per lcore.

use crate::{lcore, Eal, Error, Result};

impl Eal {
    /// Runs `f` on worker lcore `lcore`, on a thread pinned to its CPUs.
    pub fn remote_launch<F>(&'static self, lcore: u32, f: F) -> Result<LcoreThread>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        let cpus = self
            .options
            .lcores
            .cpus_of(lcore)
            .ok_or_else(|| {
                Error::Lcore(format!(
                    "lcore {lcore} is not one of this process's lcores ({})",
                    self.options.lcores.describe()
                ))
            })?
            .to_vec();
        {
            let mut l = self.launched.lock().unwrap_or_else(|p| p.into_inner());
            if l[lcore as usize] {
                return Err(Error::Lcore(format!(
                    "lcore {lcore} is busy: wait for its function to return first"
                )));
            }
            l[lcore as usize] = true;
        }
        let handle = std::thread::Builder::new()
            .name(format!("lcore-{lcore}"))
            .spawn(move || {
                let _busy = LaunchGuard { eal: self, lcore };
                if let Err(e) = lcore::bind_current_thread(lcore, &cpus) {
                    log::error!("{e}");
                    return -1;
                }
                f()
            })
            .map_err(|e| {
                self.launched.lock().unwrap_or_else(|p| p.into_inner())[lcore as usize] = false;
                Error::Lcore(format!("cannot start a thread for lcore {lcore}: {e}"))
            })?;
        Ok(LcoreThread { lcore, handle })
    }
}

struct LaunchGuard {
    eal: &'static Eal,
    lcore: u32,
}

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        self.eal.launched.lock().unwrap_or_else(|p| p.into_inner())[self.lcore as usize] = false;
    }
}

/// A function running on a worker lcore.
pub struct LcoreThread {
    lcore: u32,
    handle: std::thread::JoinHandle<i32>,
}

impl LcoreThread {
    /// The lcore the function runs on.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }
    /// Waits for the function to return; its return value, or -1 if it panicked.
    pub fn wait(self) -> i32 {
        self.handle.join().unwrap_or(-1)
    }
}
