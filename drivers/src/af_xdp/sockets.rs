//! The sockets of a `net_af_xdp` port in one process, and how a queue handle finds its
//! queue's socket again after the port restarted.

use super::xsk::Rings;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A socket as this process holds it: its rings mapped here, then its descriptor (dropped
/// in that order: the socket goes with its last mapping and descriptor in every process).
pub(super) struct Socket {
    pub(super) rings: Rings,
    pub(super) fd: OwnedFd,
}

/// A secondary's way to the primary's sockets: their descriptors over IPC, the rings mapped
/// here.
pub(super) type Fetch = Box<dyn Fn() -> net::ethdev::Result<Vec<Arc<Socket>>> + Send + Sync>;

/// The sockets of a port in this process, and the epoch that changes whenever they do.
/// Queue handles point at a socket without holding it (`SocketLink`), so that a stop closes
/// the sockets in every process at once, whatever handles exist: a stop changes them only
/// while no burst is under way (ethdev's stop waits for bursts and refuses new ones), and a
/// handle looks at the epoch before each burst.
pub(super) struct PortSockets {
    /// The port's name, for messages.
    name: String,
    socks: std::sync::Mutex<Vec<Arc<Socket>>>,
    epoch: AtomicU32,
    fetch: Option<Fetch>,
}

impl PortSockets {
    pub(super) fn new(name: &str, fetch: Option<Fetch>) -> PortSockets {
        PortSockets {
            name: name.into(),
            socks: Default::default(),
            epoch: AtomicU32::new(0),
            fetch,
        }
    }

    /// Queue `q`'s socket and the epoch it belongs to; a secondary fetches the primary's.
    pub(super) fn get(&self, q: u16) -> net::ethdev::Result<(Arc<Socket>, u32)> {
        let lock = || self.socks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fetch) = self.fetch.as_ref().filter(|_| lock().is_empty()) {
            // Fetched without the lock: the IPC thread that brings the reply may meanwhile
            // need it (a release). Kept only if no release came in between.
            let before = self.epoch.load(Ordering::Acquire);
            let fetched = fetch()?;
            let mut socks = lock();
            if socks.is_empty() && self.epoch.load(Ordering::Acquire) == before {
                *socks = fetched;
                self.epoch.fetch_add(1, Ordering::Release);
            }
        }
        let socks = lock();
        let s = socks.get(q as usize).cloned().ok_or_else(|| {
            net::ethdev::Error::device(
                &self.name,
                format!("queue {q} has no socket: is the port started?"),
            )
        })?;
        Ok((s, self.epoch.load(Ordering::Acquire)))
    }

    /// How many sockets this process holds.
    pub(super) fn len(&self) -> usize {
        self.socks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Copies of the sockets' descriptors, for a secondary (the primary).
    pub(super) fn dup_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        let socks = self.socks.lock().unwrap_or_else(|p| p.into_inner());
        socks.iter().map(|s| s.fd.try_clone()).collect()
    }

    /// Makes `socks` the port's sockets (the primary, at start).
    pub(super) fn install(&self, socks: Vec<Arc<Socket>>) {
        let mut cur = self.socks.lock().unwrap_or_else(|p| p.into_inner());
        *cur = socks;
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Gives up this process's sockets (a stop: no burst is under way in any process).
    pub(super) fn release(&self) -> Vec<Arc<Socket>> {
        let mut cur = self.socks.lock().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, Ordering::Release);
        std::mem::take(&mut *cur)
    }
}

/// A queue handle's pointer to its socket in this process, good while the port's sockets
/// keep their epoch.
pub(super) struct SocketLink {
    sockets: Arc<PortSockets>,
    q: u16,
    epoch: u32,
    sock: *const Socket,
    /// Whether the handle has taken up where this socket's rings stand.
    taken_up: bool,
    complained: bool,
}

// SAFETY: the socket it points at is Send + Sync and outlives the pointer's use (see get).
unsafe impl Send for SocketLink {}

impl SocketLink {
    pub(super) fn new(sockets: Arc<PortSockets>, q: u16) -> net::ethdev::Result<SocketLink> {
        let (s, epoch) = sockets.get(q)?;
        Ok(SocketLink {
            sock: Arc::as_ptr(&s),
            sockets,
            q,
            epoch,
            taken_up: false,
            complained: false,
        })
    }

    /// The queue's socket, and whether the handle has yet to take it up (its first call, or
    /// the port was stopped and started again): None while the port has none.
    #[inline(always)]
    fn get<'a>(&mut self) -> Option<(&'a Socket, bool)> {
        let changed = !self.taken_up;
        self.taken_up = true;
        if self.sockets.epoch.load(Ordering::Acquire) != self.epoch {
            match self.sockets.get(self.q) {
                Ok((s, epoch)) => {
                    self.sock = Arc::as_ptr(&s);
                    self.epoch = epoch;
                    // SAFETY: as below.
                    return Some((unsafe { &*self.sock }, true));
                }
                Err(e) => {
                    self.taken_up = false;
                    if !self.complained {
                        log::warn!("{e}");
                        self.complained = true;
                    }
                    return None;
                }
            }
        }
        // SAFETY: the port's sockets hold this socket for as long as their epoch is the
        // one read above, and change it only while no burst runs, which is when this is
        // called (or from the stop itself, before it gives them up).
        Some((unsafe { &*self.sock }, changed))
    }
}

/// A queue handle over a socket's rings: it takes up where they stand when it gets its
/// socket, and again whenever the port restarts with new sockets.
pub(super) trait OnSocket {
    fn link(&mut self) -> &mut SocketLink;
    /// Takes up where the socket's rings stand.
    fn sync(&mut self, s: &Socket);
    /// The socket, taken up anew if the port restarted; None while the port has none.
    #[inline(always)]
    fn socket<'a>(&mut self) -> Option<&'a Socket> {
        let (s, changed) = self.link().get()?;
        if changed {
            self.sync(s);
        }
        Some(s)
    }
}
