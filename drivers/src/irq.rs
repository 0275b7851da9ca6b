//! Interrupts taken by the primary: a thread waits on a device's eventfd and runs the
//! driver's handler (which records what changed, e.g. the link, for every process).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The interrupt thread of one device, if one runs. Each thread has its own stop flag, so
/// a thread told to stop never runs again, even when the device is restarted before it
/// noticed.
#[derive(Default)]
pub struct IrqWatch {
    running: Mutex<Option<Arc<AtomicBool>>>,
}

impl IrqWatch {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<AtomicBool>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the watching thread runs.
    pub fn is_running(&self) -> bool {
        self.slot().is_some()
    }

    /// Runs `on_irq` on a new thread each time `fd` (an eventfd the device signals) fires,
    /// until `stop`; a thread started before is stopped first.
    pub fn start(&self, fd: OwnedFd, mut on_irq: impl FnMut() + Send + 'static) {
        let running = Arc::new(AtomicBool::new(true));
        if let Some(old) = self.slot().replace(running.clone()) {
            old.store(false, Ordering::Release);
        }
        std::thread::spawn(move || {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            while running.load(Ordering::Acquire) {
                // SAFETY: one valid pollfd; a timeout so that stopping is noticed.
                let n = unsafe { libc::poll(&mut pfd, 1, 100) };
                if n <= 0 {
                    continue;
                }
                let mut v = [0u8; 8];
                // SAFETY: an 8-byte read from our eventfd into a local buffer.
                unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
                on_irq();
            }
        });
    }

    /// Tells the thread to end (within its 100 ms poll).
    pub fn stop(&self) {
        if let Some(r) = self.slot().take() {
            r.store(false, Ordering::Release);
        }
    }
}
