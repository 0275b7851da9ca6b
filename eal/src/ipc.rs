//! The IPC channel between the processes of a group.
//!
//! The primary listens on a `SOCK_SEQPACKET` unix socket in the runtime dir; each
//! secondary keeps one connection to it. Seqpacket keeps message boundaries, carries file
//! descriptors (`SCM_RIGHTS`), and tells each side at once when the other dies (end of
//! file), which is how the primary frees a dead secondary's lcores and a secondary
//! notices its primary is gone.
//!
//! A message is a named action with a small payload and optional fds: a request (answered
//! by the handler registered for its name, or with an error), its reply, or a broadcast.
//! Request handlers and peer-exit hooks run on the IPC thread, so they must not make
//! requests themselves (such a request fails at once); broadcast handlers run on a thread
//! of their own and may.

use crate::{Error, Result};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Largest message, fds apart.
const MAX_MSG: usize = 64 * 1024;
/// Most fds one message carries.
pub const MAX_FDS: usize = 8;
/// Name of the reply sent when no handler is registered for a request's action.
pub const NO_HANDLER: &str = "ipc_no_handler";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Request = 1,
    Reply = 2,
    Broadcast = 3,
}

/// A named action with its payload and file descriptors.
#[derive(Debug)]
pub struct Message {
    /// The action, which selects the handler on the receiving side.
    pub name: String,
    /// What the action needs (often text).
    pub payload: Vec<u8>,
    /// File descriptors passed with it (`SCM_RIGHTS`): the receiver gets its own copies.
    pub fds: Vec<OwnedFd>,
}

impl Message {
    /// A message without file descriptors.
    pub fn new(name: &str, payload: impl Into<Vec<u8>>) -> Self {
        Message {
            name: name.into(),
            payload: payload.into(),
            fds: Vec::new(),
        }
    }
    /// The message with `fds` attached.
    pub fn with_fds(mut self, fds: Vec<OwnedFd>) -> Self {
        self.fds = fds;
        self
    }
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Answers requests of one action: gets the sender's pid and the message, returns the reply.
pub type Handler = Arc<dyn Fn(i32, Message) -> Message + Send + Sync>;
/// Receives broadcasts of one action.
pub type BroadcastHandler = Arc<dyn Fn(Message) + Send + Sync>;
/// Called on the IPC thread when a peer's connection ends, with the peer's pid.
pub type PeerExitHook = Box<dyn Fn(i32) + Send + Sync>;

/// One side of the channel.
pub struct Ipc {
    socket_path: PathBuf,
    handlers: Mutex<HashMap<String, Handler>>,
    broadcast_handlers: Mutex<HashMap<String, BroadcastHandler>>,
    pending: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    /// Connections by peer pid: the secondaries (in the primary), or the primary.
    peers: Mutex<HashMap<i32, Arc<OwnedFd>>>,
    on_peer_exit: Mutex<Vec<PeerExitHook>>,
    next_id: AtomicU64,
    /// Broadcasts go to a thread of their own, so that a broadcast handler may make requests:
    /// on the IPC thread it would wait for a reply that only that thread can receive.
    broadcasts: mpsc::Sender<Message>,
}

thread_local! {
    /// True on a thread that serves IPC messages (requests from it would never see their reply).
    static SERVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(crate) fn sockaddr(path: &Path) -> io::Result<UnixAddr> {
    // SAFETY: sockaddr_un is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok((
        addr,
        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
    ))
}

pub(crate) fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the fd is owned right away.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A unix socket address and its length, as [`sockaddr`] makes it.
pub(crate) type UnixAddr = (libc::sockaddr_un, libc::socklen_t);

/// Binds `sock` to `addr`.
pub(crate) fn bind(sock: &OwnedFd, addr: &UnixAddr) -> io::Result<()> {
    let (addr, len) = addr;
    // SAFETY: addr is a valid sockaddr_un of length len; the socket is the caller's.
    cvt(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            addr as *const _ as *const libc::sockaddr,
            *len,
        )
    })
    .map(drop)
}

/// Connects `sock` to `addr`.
pub(crate) fn connect(sock: &OwnedFd, addr: &UnixAddr) -> io::Result<()> {
    let (addr, len) = addr;
    // SAFETY: addr is a valid sockaddr_un of length len; the socket is the caller's.
    cvt(unsafe {
        libc::connect(
            sock.as_raw_fd(),
            addr as *const _ as *const libc::sockaddr,
            *len,
        )
    })
    .map(drop)
}

/// Listens on the bound `sock` with `backlog`.
pub(crate) fn listen(sock: &OwnedFd, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: listen on a socket the caller owns.
    cvt(unsafe { libc::listen(sock.as_raw_fd(), backlog) }).map(drop)
}

/// The next connection on the listening `sock`.
pub(crate) fn accept(sock: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: accept4 on a listening socket the caller owns.
    let fd = cvt(unsafe {
        libc::accept4(
            sock.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by accept4 and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn peer_pid(fd: RawFd) -> io::Result<i32> {
    // SAFETY: ucred is plain data.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes a ucred of the size we pass.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(cred.pid)
}

fn encode(kind: Kind, id: u64, msg: &Message) -> Result<Vec<u8>> {
    if msg.name.is_empty()
        || msg.name.len() > 64
        || msg.payload.len() + 74 > MAX_MSG
        || msg.fds.len() > MAX_FDS
    {
        return Err(Error::Ipc(format!(
            "message '{}' is too large (name 1-64 bytes, payload below {} KiB, at most {MAX_FDS} fds)",
            msg.name,
            MAX_MSG / 1024
        )));
    }
    let mut b = Vec::with_capacity(10 + msg.name.len() + msg.payload.len());
    b.push(kind as u8);
    b.extend_from_slice(&id.to_le_bytes());
    b.push(msg.name.len() as u8);
    b.extend_from_slice(msg.name.as_bytes());
    b.extend_from_slice(&msg.payload);
    Ok(b)
}

fn decode(buf: &[u8], fds: Vec<OwnedFd>) -> Option<(Kind, u64, Message)> {
    let kind = match *buf.first()? {
        1 => Kind::Request,
        2 => Kind::Reply,
        3 => Kind::Broadcast,
        _ => return None,
    };
    let id = u64::from_le_bytes(buf.get(1..9)?.try_into().ok()?);
    let nlen = *buf.get(9)? as usize;
    let name = std::str::from_utf8(buf.get(10..10 + nlen)?)
        .ok()?
        .to_string();
    let payload = buf.get(10 + nlen..)?.to_vec();
    Some((kind, id, Message { name, payload, fds }))
}

/// Sends `bytes` with `fds` attached (`SCM_RIGHTS`) on the unix socket `fd`.
pub fn send_raw(fd: RawFd, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // Room for MAX_FDS descriptors, aligned for cmsghdr.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = (fds.len() * std::mem::size_of::<RawFd>()) as u32;
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        mh.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        mh.msg_controllen = space;
        // SAFETY: the control buffer is 64 bytes, enough for CMSG_SPACE of 8 fds (48 bytes);
        // CMSG_FIRSTHDR/CMSG_DATA point inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(data_len) as usize;
            let data = libc::CMSG_DATA(c) as *mut RawFd;
            for (i, f) in fds.iter().enumerate() {
                data.add(i).write_unaligned(f.as_raw_fd());
            }
        }
    }
    // SAFETY: mh points at the iovec and control buffer above, alive for the call.
    let n = unsafe { libc::sendmsg(fd, &mh, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message; `Ok(None)` at end of file (the peer is gone).
pub fn recv_raw(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    mh.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: mh points at buffers we own, alive for the call.
    let n = unsafe { libc::recvmsg(fd, &mut mh, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Ok(None);
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled the control buffer; CMSG_* walk only within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count =
                    ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    // Each received fd is new in this process and owned by nobody yet.
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    Ok(Some((n as usize, fds)))
}

impl Ipc {
    fn new(socket_path: PathBuf) -> Result<Arc<Self>> {
        let (broadcasts, received) = mpsc::channel::<Message>();
        let ipc = Arc::new(Ipc {
            socket_path,
            handlers: Mutex::default(),
            broadcast_handlers: Mutex::default(),
            pending: Mutex::default(),
            peers: Mutex::default(),
            on_peer_exit: Mutex::default(),
            next_id: AtomicU64::new(1),
            broadcasts,
        });
        let me = Arc::downgrade(&ipc);
        std::thread::Builder::new()
            .name("eal-ipc-bcast".into())
            .spawn(move || {
                while let Ok(msg) = received.recv() {
                    let Some(me) = me.upgrade() else { return };
                    let h = lock(&me.broadcast_handlers).get(&msg.name).cloned();
                    if let Some(h) = h {
                        h(msg);
                    }
                }
            })
            .map_err(|e| Error::Ipc(format!("cannot start the IPC broadcast thread: {e}")))?;
        Ok(ipc)
    }

    /// Starts the primary's side: listens in `dir` and serves on a thread of its own.
    pub fn listen(dir: &Path) -> Result<Arc<Self>> {
        let path = dir.join("mp_socket");
        let _ = std::fs::remove_file(&path);
        let sock =
            seqpacket_socket().map_err(|e| Error::io("cannot create IPC socket", &path, e))?;
        let addr = sockaddr(&path).map_err(|e| Error::io("bad IPC socket path", &path, e))?;
        bind(&sock, &addr)
            .and_then(|_| listen(&sock, 64))
            .map_err(|e| Error::io("cannot listen on IPC socket", &path, e))?;
        let ipc = Ipc::new(path)?;
        let me = ipc.clone();
        std::thread::Builder::new()
            .name("eal-ipc".into())
            .spawn(move || me.serve(Some(sock)))
            .map_err(|e| Error::Ipc(format!("cannot start the IPC thread: {e}")))?;
        Ok(ipc)
    }

    /// Starts a secondary's side: connects to the primary in `dir`.
    pub fn connect(dir: &Path) -> Result<Arc<Self>> {
        let path = dir.join("mp_socket");
        let sock =
            seqpacket_socket().map_err(|e| Error::io("cannot create IPC socket", &path, e))?;
        let addr = sockaddr(&path).map_err(|e| Error::io("bad IPC socket path", &path, e))?;
        connect(&sock, &addr).map_err(|e| {
            Error::Ipc(format!(
                "cannot reach the primary at {}: {e}: is it still running?",
                path.display()
            ))
        })?;
        let pid = peer_pid(sock.as_raw_fd())
            .map_err(|e| Error::Ipc(format!("cannot identify the primary: {e}")))?;
        let ipc = Ipc::new(path)?;
        ipc.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, Arc::new(sock));
        let me = ipc.clone();
        std::thread::Builder::new()
            .name("eal-ipc".into())
            .spawn(move || me.serve(None))
            .map_err(|e| Error::Ipc(format!("cannot start the IPC thread: {e}")))?;
        Ok(ipc)
    }

    /// The primary's socket, in the group's runtime directory.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Registers the handler of requests named `name` (replacing any earlier one). Request
    /// handlers (and peer-exit hooks) run on the IPC thread: a request made from one fails
    /// at once.
    pub fn register(
        &self,
        name: &str,
        h: impl Fn(i32, Message) -> Message + Send + Sync + 'static,
    ) {
        lock(&self.handlers).insert(name.into(), Arc::new(h));
    }

    /// Registers the handler of broadcasts named `name`. Broadcast handlers run one at a
    /// time, in the order the broadcasts came, on a thread of their own: they may make
    /// requests.
    pub fn on_broadcast(&self, name: &str, h: impl Fn(Message) + Send + Sync + 'static) {
        lock(&self.broadcast_handlers).insert(name.into(), Arc::new(h));
    }

    /// Adds a hook called when a peer's connection ends.
    pub fn on_peer_exit(&self, h: impl Fn(i32) + Send + Sync + 'static) {
        lock(&self.on_peer_exit).push(Box::new(h));
    }

    /// Pids of the connected peers.
    pub fn peers(&self) -> Vec<i32> {
        lock(&self.peers).keys().copied().collect()
    }

    /// Sends a request to `peer` (a pid; in a secondary, `None` means the primary) and
    /// waits up to `timeout` for its reply.
    pub fn request(&self, peer: Option<i32>, msg: Message, timeout: Duration) -> Result<Message> {
        if SERVING.get() {
            return Err(Error::Ipc(format!(
                "'{}' was requested on the IPC thread (from a request handler or a peer-exit \
                 hook), which would wait for a reply that only that thread can receive: make \
                 the request from another thread",
                msg.name
            )));
        }
        let (pid, fd) = {
            let peers = lock(&self.peers);
            match peer {
                Some(p) => (p, peers.get(&p).cloned()),
                None => peers
                    .iter()
                    .next()
                    .map(|(p, f)| (*p, Some(f.clone())))
                    .unwrap_or((0, None)),
            }
        };
        let fd = fd.ok_or_else(|| Error::Ipc(format!("no connection to process {pid}")))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(id, tx);
        let name = msg.name.clone();
        let sent = encode(Kind::Request, id, &msg).and_then(|b| {
            send_raw(fd.as_raw_fd(), &b, &msg.fds)
                .map_err(|e| Error::Ipc(format!("cannot send '{name}' to process {pid}: {e}")))
        });
        let reply = sent.and_then(|_| {
            rx.recv_timeout(timeout).map_err(|_| {
                Error::Ipc(format!(
                    "no reply to '{name}' from process {pid} within {} ms",
                    timeout.as_millis()
                ))
            })
        });
        lock(&self.pending).remove(&id);
        let reply = reply?;
        if reply.name == NO_HANDLER {
            return Err(Error::Ipc(format!(
                "process {pid} has no handler for '{name}'"
            )));
        }
        Ok(reply)
    }

    /// Sends a broadcast to every peer; returns how many it reached.
    pub fn broadcast(&self, msg: &Message) -> Result<usize> {
        let bytes = encode(Kind::Broadcast, 0, msg)?;
        let peers: Vec<Arc<OwnedFd>> = lock(&self.peers).values().cloned().collect();
        Ok(peers
            .iter()
            .filter(|fd| send_raw(fd.as_raw_fd(), &bytes, &msg.fds).is_ok())
            .count())
    }

    fn serve(self: Arc<Self>, listener: Option<OwnedFd>) {
        SERVING.set(true);
        let mut buf = vec![0u8; MAX_MSG];
        loop {
            let mut conns: Vec<(i32, Arc<OwnedFd>)> = lock(&self.peers)
                .iter()
                .map(|(p, f)| (*p, f.clone()))
                .collect();
            let mut pfds: Vec<libc::pollfd> = conns
                .iter()
                .map(|(_, f)| libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            if let Some(l) = &listener {
                pfds.push(libc::pollfd {
                    fd: l.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            if pfds.is_empty() {
                return;
            }
            // SAFETY: pfds is a live array of pollfd of the given length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("IPC poll failed: {}", io::Error::last_os_error());
                return;
            }
            if let Some(l) = &listener {
                if pfds.last().is_some_and(|p| p.revents & libc::POLLIN != 0) {
                    self.take_connection(l);
                }
            }
            for (i, (pid, fd)) in conns.drain(..).enumerate() {
                if pfds[i].revents == 0 {
                    continue;
                }
                match recv_raw(fd.as_raw_fd(), &mut buf) {
                    Ok(Some((len, fds))) => match decode(&buf[..len], fds) {
                        Some((kind, id, msg)) => self.dispatch(pid, &fd, kind, id, msg),
                        None => log::warn!("dropped a malformed IPC message from process {pid}"),
                    },
                    Ok(None) | Err(_) => self.peer_gone(pid),
                }
            }
        }
    }

    fn take_connection(&self, listener: &OwnedFd) {
        let Ok(fd) = accept(listener) else {
            return;
        };
        match peer_pid(fd.as_raw_fd()) {
            Ok(pid) => {
                log::debug!("process {pid} connected");
                lock(&self.peers).insert(pid, Arc::new(fd));
            }
            Err(e) => log::warn!("refused an IPC connection whose sender is unknown: {e}"),
        }
    }

    fn peer_gone(&self, pid: i32) {
        lock(&self.peers).remove(&pid);
        for hook in lock(&self.on_peer_exit).iter() {
            hook(pid);
        }
    }

    fn dispatch(&self, pid: i32, fd: &OwnedFd, kind: Kind, id: u64, msg: Message) {
        match kind {
            Kind::Reply => {
                if let Some(tx) = lock(&self.pending).remove(&id) {
                    let _ = tx.send(msg);
                }
            }
            Kind::Broadcast => {
                // The receiving end lives as long as this Ipc.
                let _ = self.broadcasts.send(msg);
            }
            Kind::Request => {
                let h = lock(&self.handlers).get(&msg.name).cloned();
                let reply = match h {
                    Some(h) => h(pid, msg),
                    None => Message::new(NO_HANDLER, msg.name.into_bytes()),
                };
                let sent = encode(Kind::Reply, id, &reply)
                    .map(|b| send_raw(fd.as_raw_fd(), &b, &reply.fds));
                if !matches!(sent, Ok(Ok(()))) {
                    log::warn!("could not reply '{}' to process {pid}", reply.name);
                }
            }
        }
    }
}

/// Locks a mutex, ignoring poisoning: the IPC tables stay consistent across a panicking handler.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let m = Message::new("eal_lcore_claim", b"1,2".to_vec());
        let b = encode(Kind::Request, 42, &m).expect("encodes");
        let (k, id, d) = decode(&b, Vec::new()).expect("decodes");
        assert_eq!(
            (k, id, d.name.as_str(), d.payload.as_slice()),
            (Kind::Request, 42, "eal_lcore_claim", &b"1,2"[..])
        );
        assert!(decode(&[9, 0], Vec::new()).is_none());
        assert!(encode(Kind::Request, 1, &Message::new("", Vec::new())).is_err());
    }

    #[test]
    fn request_reply_broadcast_fds_and_peer_exit_between_threads() {
        let dir = std::env::temp_dir().join(format!("rpmd-ipc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let server = Ipc::listen(&dir).expect("listen");
        server.register("echo", |pid, m| {
            Message::new("echo", format!("{pid}:{}", m.text()))
        });
        let client = Ipc::connect(&dir).expect("connect");
        let got = client
            .request(None, Message::new("echo", "hi"), Duration::from_secs(2))
            .expect("reply");
        assert_eq!(got.text(), format!("{}:hi", std::process::id()));
        let err = client
            .request(None, Message::new("nope", ""), Duration::from_secs(2))
            .expect_err("no handler");
        assert!(err.to_string().contains("no handler"));

        // A file descriptor crosses the socket and stays usable.
        let (tx, rx) = mpsc::channel();
        client.on_broadcast("file", move |m| {
            let _ = tx.send(m);
        });
        let f = std::fs::File::open("/proc/self/status").expect("file");
        let sent = server
            .broadcast(&Message::new("file", "x").with_fds(vec![OwnedFd::from(f)]))
            .expect("broadcast");
        assert_eq!(sent, 1);
        let m = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("broadcast received");
        assert_eq!(m.fds.len(), 1);
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut std::fs::File::from(m.fds.into_iter().next().expect("fd")),
            &mut s,
        )
        .expect("read");
        assert!(s.contains("Name:"));

        // A broadcast handler may ask the primary something (as a secondary does when told
        // of a new PCI port); a request handler that asks gets an error, not a deadlock.
        let (tx, rx) = mpsc::channel();
        let asker = client.clone();
        client.on_broadcast("ask", move |_| {
            let r = asker.request(
                None,
                Message::new("echo", "from handler"),
                Duration::from_secs(2),
            );
            let _ = tx.send(r.map(|m| m.text()).map_err(|e| e.to_string()));
        });
        server
            .broadcast(&Message::new("ask", ""))
            .expect("broadcast");
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("handler ran");
        assert_eq!(got, Ok(format!("{}:from handler", std::process::id())));
        let back = server.clone();
        server.register("nested", move |pid, _| {
            let r = back.request(Some(pid), Message::new("echo", ""), Duration::from_secs(2));
            Message::new("nested", r.err().map(|e| e.to_string()).unwrap_or_default())
        });
        let got = client
            .request(None, Message::new("nested", ""), Duration::from_secs(2))
            .expect("reply");
        assert!(got.text().contains("on the IPC thread"), "{}", got.text());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
