//! File descriptors of a primary's ports, handed to secondaries over IPC (`SCM_RIGHTS`):
//! descriptors belong to a process, so a secondary polling a TAP queue or kicking a
//! vhost-user ring asks the primary for its own copies.

use eal::ipc::Message;
use net::ethdev::{Error, Result};
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

type Source = Arc<dyn Fn() -> io::Result<Vec<OwnedFd>> + Send + Sync>;

/// One IPC action (e.g. `net_tap_fds`) answering for the ports of one driver, by port name.
pub struct FdShare {
    action: &'static str,
    ports: OnceLock<Mutex<HashMap<String, Source>>>,
}

impl FdShare {
    /// A share answering IPC action `action` (one per driver).
    pub const fn new(action: &'static str) -> FdShare {
        FdShare {
            action,
            ports: OnceLock::new(),
        }
    }

    fn ports(&'static self) -> &'static Mutex<HashMap<String, Source>> {
        self.ports.get_or_init(|| {
            if let Ok(eal) = eal::eal() {
                eal.ipc()
                    .register(self.action, move |_pid, msg| self.answer(&msg.text()));
            }
            Mutex::new(HashMap::new())
        })
    }

    fn answer(&'static self, name: &str) -> Message {
        let source = self
            .ports()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        match source.map(|s| s()) {
            Some(Ok(fds)) if !fds.is_empty() => Message::new(self.action, "ok").with_fds(fds),
            Some(Ok(_)) => Message::new(
                self.action,
                format!("err:port '{name}' has no file descriptors yet"),
            ),
            Some(Err(e)) => Message::new(self.action, format!("err:{e}")),
            None => Message::new(
                self.action,
                format!("err:no port named '{name}' in the primary"),
            ),
        }
    }

    /// In the primary: answers requests for port `name` with copies of what `fds` gives.
    pub fn publish(
        &'static self,
        name: &str,
        fds: impl Fn() -> io::Result<Vec<OwnedFd>> + Send + Sync + 'static,
    ) {
        self.ports()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), Arc::new(fds));
    }

    /// In the primary: stops answering for port `name`.
    pub fn withdraw(&'static self, name: &str) {
        self.ports()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// In a secondary: this process's copies of port `name`'s descriptors.
    pub fn fetch(&self, name: &str) -> Result<Vec<OwnedFd>> {
        let reply = eal::eal()?.ipc().request(
            None,
            Message::new(self.action, name),
            Duration::from_secs(5),
        )?;
        match reply.text().strip_prefix("err:") {
            Some(why) => Err(Error::NotShared {
                port: name.into(),
                why: why.into(),
            }),
            None => Ok(reply.fds),
        }
    }
}

/// Connects to the unix socket at `path` and takes the one descriptor it hands over (the
/// 82599 model's interrupt eventfd).
pub fn receive_fd(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 16];
    eal::ipc::recv_raw(s.as_raw_fd(), &mut buf)?
        .and_then(|(_, fds)| fds.into_iter().next())
        .ok_or_else(|| io::Error::other(format!("{} handed over no descriptor", path.display())))
}
