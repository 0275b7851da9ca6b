//! What `mp_server` and `mp_client` share (DPDK's client_server_mp example): the names of
//! the group's objects and the table of clients in a memzone.
//!
//! The server (primary) receives on its ports and puts each frame, by flow hash, on the
//! ring of one client; client `n` (a secondary, `-n n`) takes frames from its ring and sends
//! each out of the port paired with the one it came in on, on TX queue `n`.
//!
//! A client slot's `pid` says who may take from its ring: a running client (its pid), nobody
//! (0), or the server while it empties the ring of a client that left or died
//! (`DRAINING`). Only the server moves a slot away from a dead pid, and a client only claims
//! a slot that is 0, so the ring never has two consumers.

use std::sync::atomic::{AtomicI32, AtomicU64};
use std::time::Duration;

pub const POOL_NAME: &str = "MProc_pktmbuf_pool";
pub const INFO_NAME: &str = "MProc_port_info";
pub const MAX_CLIENTS: usize = 16;
pub const MAX_PORTS: usize = 32;
/// Entries of each client's ring.
pub const CLIENT_RING_SIZE: u32 = 2048;
/// The slot's pid while the server empties the client's ring.
pub const DRAINING: i32 = -1;

/// How long a TX queue is given to send what it holds when its client leaves or dies.
pub const TX_DONE_WAIT: Duration = Duration::from_millis(500);

/// The name of client `n`'s ring.
pub fn client_ring_name(n: u16) -> String {
    format!("MProc_Client_{n}_RX")
}

/// One client: who runs it and what went through it.
#[repr(C)]
#[derive(Default)]
pub struct ClientSlot {
    pub pid: AtomicI32,
    /// Frames the server put on the client's ring.
    pub rx: AtomicU64,
    /// Frames for this client the server dropped: ring full, or no client running.
    pub rx_drop: AtomicU64,
    /// Frames the server took back from the ring of a client that left or died.
    pub drained: AtomicU64,
    /// Frames the client sent, and those its ports would not take (freed).
    pub tx: AtomicU64,
    pub tx_drop: AtomicU64,
}

/// The memzone both sides share.
#[repr(C)]
pub struct ServerInfo {
    pub num_clients: u16,
    /// The server's ports, paired in this order: the 1st with the 2nd, the 3rd with the 4th.
    pub num_ports: u16,
    pub ports: [u16; MAX_PORTS],
    pub clients: [ClientSlot; MAX_CLIENTS],
}

impl ServerInfo {
    /// The port a frame that came in on `port` leaves by (itself for an odd last one).
    pub fn paired(&self, port: u16) -> u16 {
        let ports = &self.ports[..self.num_ports as usize];
        match ports.iter().position(|p| *p == port) {
            Some(i) if i % 2 == 0 => ports.get(i + 1).copied().unwrap_or(port),
            Some(i) => ports[i - 1],
            None => port,
        }
    }
}

/// Creates the shared table for `num_clients` clients and `ports` (the server).
pub fn create_info(num_clients: u16, ports: &[u16]) -> eal::Result<&'static ServerInfo> {
    let mz = eal::eal()?.memzone_reserve(
        INFO_NAME,
        std::mem::size_of::<ServerInfo>() as u64,
        64,
        eal::MemzoneFlags::empty(),
    )?;
    let info = mz.as_ptr::<ServerInfo>();
    // SAFETY: a fresh, zeroed, 64-byte aligned memzone of size_of::<ServerInfo>() bytes (all
    // zero is a valid ServerInfo: integers and atomics); no client can find it before the
    // fields below are written, since clients start after the server says it is ready.
    let info = unsafe { &mut *info };
    info.num_clients = num_clients;
    info.num_ports = ports.len() as u16;
    info.ports[..ports.len()].copy_from_slice(ports);
    Ok(info)
}

/// The table the server created (a client).
pub fn lookup_info() -> eal::Result<&'static ServerInfo> {
    let mz = eal::eal()?.memzone_lookup(INFO_NAME)?;
    // SAFETY: the server made this memzone a ServerInfo (create_info); it lives as long as
    // the group's memory, which this process keeps mapped until it exits.
    Ok(unsafe { &*mz.as_ptr::<ServerInfo>() })
}

/// The frame's flow hash: the NIC's RSS hash when it gave one, else the Toeplitz hash of
/// its IPv4 addresses and ports with DPDK's default key (0 for other frames).
pub fn flow_hash(m: &net::Mbuf) -> u32 {
    m.rss_hash()
        .unwrap_or_else(|| net::rss::hash_ipv4_frame(&net::rss::DEFAULT_KEY, m.data()).unwrap_or(0))
}

/// Waits until the device has sent what client `client`'s TX queue `q` holds and frees it
/// (the client as it leaves, or the server after it died); says what is left.
pub fn free_sent(q: &mut net::TxQueue, client: u16) {
    let held = q.wait_sent(TX_DONE_WAIT);
    if held > 0 {
        log::warn!(
            "client {client}: port {} still holds {held} of its frames after {TX_DONE_WAIT:?}; they come back when a client {client} sends again or the port stops",
            q.port().id()
        );
    }
}
