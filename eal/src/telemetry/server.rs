//! The telemetry socket: where it lies, taking it over from a dead process, the listening
//! thread and one thread per client.

use super::{info, reply, MAX_OUTPUT_LEN};
use crate::ipc::{
    accept, bind, connect, listen, peer_pid, recv_raw, send_raw, seqpacket_socket, sockaddr,
};
use crate::runtime::Role;
use crate::{Error, Result};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The socket's name in its directory, as DPDK's.
const SOCKET_NAME: &str = "dpdk_telemetry.v2";
/// Clients served at once, as DPDK's `MAX_CONNECTIONS`: one more is accepted and closed.
const MAX_CLIENTS: usize = 10;
/// The longest request read, as DPDK's (1024 bytes with its NUL).
const MAX_REQUEST: usize = 1023;
/// How many `:N` names a secondary tries.
const MAX_INSTANCE: u32 = 1024;

/// DPDK's runtime directory of group `prefix`, where its telemetry socket lies:
/// `<runtime base>/dpdk/<prefix>` ([`crate::runtime::runtime_base`]).
pub fn socket_dir(prefix: &str) -> PathBuf {
    crate::runtime::runtime_base().join("dpdk").join(prefix)
}

/// This process's telemetry socket, served until the process ends; [`Server::remove`]
/// deletes its file at a clean exit.
pub struct Server {
    path: PathBuf,
}

/// What binding a path found.
enum Bound {
    Listening(OwnedFd),
    /// A live process serves there: its pid, if the kernel says.
    Taken(Option<i32>),
}

impl Server {
    /// Binds the socket of a process of `role` in group `prefix` and starts serving.
    pub fn start(prefix: &str, role: Role) -> Result<Server> {
        let dir = socket_dir(prefix);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("cannot create the telemetry directory", &dir, e))?;
        let plain = dir.join(SOCKET_NAME);
        let (path, sock) = match role {
            Role::Primary => match bind_at(&plain)? {
                Bound::Listening(s) => (plain, s),
                Bound::Taken(pid) => return Err(taken(&plain, prefix, pid)),
            },
            Role::Secondary => (1..=MAX_INSTANCE)
                .find_map(|n| {
                    let path = dir.join(format!("{SOCKET_NAME}:{n}"));
                    match bind_at(&path) {
                        Ok(Bound::Listening(s)) => Some(Ok((path, s))),
                        Ok(Bound::Taken(_)) => None,
                        Err(e) => Some(Err(e)),
                    }
                })
                .unwrap_or_else(|| {
                    Err(Error::Telemetry(format!(
                        "every telemetry socket {}:1 to :{MAX_INSTANCE} is served by a live process: start this one with --no-telemetry",
                        plain.display()
                    )))
                })?,
        };
        let clients = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("telemetry-v2".into())
            .spawn(move || serve_clients(sock, clients))
            .map_err(|e| Error::Telemetry(format!("cannot start the telemetry thread: {e}")))?;
        log::info!("telemetry served at {}", path.display());
        Ok(Server { path })
    }

    /// Deletes the socket's file (at the process's clean exit), and its directory if nothing
    /// else is left in it.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn taken(path: &Path, prefix: &str, pid: Option<i32>) -> Error {
    let holder = match pid {
        Some(pid) => crate::describe_process(pid as u32),
        None => "a live process".into(),
    };
    Error::Telemetry(format!(
        "the telemetry socket {} of group '{prefix}' is served by {holder}: give this group another --file-prefix, or start it with --no-telemetry",
        path.display()
    ))
}

/// Binds and listens at `path`; a file there that no live process serves is replaced,
/// as DPDK does.
fn bind_at(path: &Path) -> Result<Bound> {
    let sock =
        seqpacket_socket().map_err(|e| Error::io("cannot create the telemetry socket", path, e))?;
    let addr = sockaddr(path).map_err(|e| Error::io("bad telemetry socket path", path, e))?;
    if let Err(e) = bind(&sock, &addr) {
        if e.raw_os_error() != Some(libc::EADDRINUSE) {
            return Err(Error::io("cannot bind the telemetry socket", path, e));
        }
        if let Some(pid) = live_server(&addr) {
            return Ok(Bound::Taken(pid));
        }
        let _ = std::fs::remove_file(path);
        bind(&sock, &addr).map_err(|e| Error::io("cannot bind the telemetry socket", path, e))?;
        log::info!("replaced the stale telemetry socket {}", path.display());
    }
    // DPDK's backlog of 1.
    if let Err(e) = listen(&sock, 1) {
        let _ = std::fs::remove_file(path);
        return Err(Error::io("cannot listen on the telemetry socket", path, e));
    }
    Ok(Bound::Listening(sock))
}

/// Whether a live process serves at `addr` (`Some`, with its pid when the kernel tells),
/// found as DPDK does: by connecting.
fn live_server(addr: &crate::ipc::UnixAddr) -> Option<Option<i32>> {
    let sock = seqpacket_socket().ok()?;
    connect(&sock, addr)
        .ok()
        .map(|_| peer_pid(sock.as_raw_fd()).ok())
}

fn serve_clients(sock: OwnedFd, clients: Arc<AtomicUsize>) {
    loop {
        let conn = match accept(&sock) {
            Ok(conn) => conn,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("telemetry: accept failed, no more clients served: {e}");
                return;
            }
        };
        if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::AcqRel);
            log::warn!("telemetry: {MAX_CLIENTS} clients already connected; one more refused");
            continue;
        }
        let count = clients.clone();
        let spawned = std::thread::Builder::new()
            .name("telemetry-client".into())
            .spawn(move || {
                serve(&conn);
                count.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            clients.fetch_sub(1, Ordering::AcqRel);
            log::warn!("telemetry: cannot start a client thread: {e}");
        }
    }
}

/// One client: the hello, then a reply to each request until it closes.
fn serve(conn: &OwnedFd) {
    let fd = conn.as_raw_fd();
    if send_raw(fd, info().to_string().as_bytes(), &[]).is_err() {
        return;
    }
    let mut buf = vec![0u8; MAX_REQUEST];
    while let Ok(Some((n, _))) = recv_raw(fd, &mut buf) {
        let request = String::from_utf8_lossy(&buf[..n]);
        let text = reply(&request);
        debug_assert!(text.len() < MAX_OUTPUT_LEN);
        if send_raw(fd, text.as_bytes(), &[]).is_err() {
            return;
        }
    }
}
