//! Interrupts taken by the primary: a thread waits on a device's eventfd and runs the
//! driver's handler (which records what changed, e.g. the link, for every process).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs `on_irq` on a new thread each time `fd` (an eventfd the device signals) fires,
/// until `running` is cleared.
pub fn watch(fd: OwnedFd, running: Arc<AtomicBool>, mut on_irq: impl FnMut() + Send + 'static) {
    running.store(true, Ordering::Release);
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
