//! What `mp_server` and `mp_client` share (DPDK's client_server_mp example): the names of
//! the group's objects and the table of clients in a memzone.
//!
//! The server (primary) receives on its ports and puts each frame, by flow hash, on the
//! ring of one client; client `n` (a secondary, `-n n`) takes frames from its ring and sends
//! each out of the port paired with the one it came in on, on TX queue `n`.
//!
//! A client slot's `pid` says who may take from its ring: a running client (its pid), nobody
//! (0), the server while it empties the ring of a client that left or died (`DRAINING`), or
//! nobody until the server has settled what a client left in its hand (`HANDED_BACK`). Only
//! the server moves a slot away from a dead pid or `HANDED_BACK`, and a client only claims a
//! slot that is 0, so the ring never has two consumers.
//!
//! No frame is lost when a client dies, whenever it dies. A client takes frames with
//! `sc_dequeue_start`, so they stay claimed in its ring (its *hand*) until it has sent them
//! all; before each TX burst it notes in its slot the queue's mark and how many of that
//! port's frames earlier bursts sent ([`TxNote`]). The server settles a dead client's hand
//! with the notes and [`net::Port::tx_taken_since`]: what the TX queues took is theirs, the
//! rest it frees ([`settle_hand`]). A client never frees a frame: what a port will not take
//! now it offers again.

use net::mbuf_ring::MbufRing;
use net::{Mbuf, Port};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// The mbuf pool the server creates (DPDK's example's name).
pub const POOL_NAME: &str = "MProc_pktmbuf_pool";
/// The memzone holding [`ServerInfo`].
pub const INFO_NAME: &str = "MProc_port_info";
/// Most clients a server takes.
pub const MAX_CLIENTS: usize = 16;
/// Most ports a server forwards.
pub const MAX_PORTS: usize = 32;
/// Entries of each client's ring.
pub const CLIENT_RING_SIZE: u32 = 2048;
/// The slot's pid while the server empties the client's ring.
pub const DRAINING: i32 = -1;
/// The slot's pid after a client stopped with frames still in its hand (a port would not
/// take them): the server settles them, then frees the slot.
pub const HANDED_BACK: i32 = -2;

/// How long a TX queue is given to send what it holds when its client leaves or dies (the
/// wait ends as soon as it has; a device emulated on a loaded host, QEMU under TCG, took
/// longer than half a second).
pub const TX_DONE_WAIT: Duration = Duration::from_secs(2);

/// The name of client `n`'s ring.
pub fn client_ring_name(n: u16) -> String {
    format!("MProc_Client_{n}_RX")
}

/// One client: who runs it and what went through it.
#[repr(C)]
#[derive(Default)]
pub struct ClientSlot {
    /// The client's pid; 0 when none runs, or the server's marks `DRAINING`/`HANDED_BACK`.
    pub pid: AtomicI32,
    /// Frames the server put on the client's ring.
    pub rx: AtomicU64,
    /// Frames for this client the server dropped: ring full, or no client running.
    pub rx_drop: AtomicU64,
    /// Frames the server took back from the ring (or hand) of a client that left or died.
    pub drained: AtomicU64,
    /// Frames the client sent.
    pub tx: AtomicU64,
    /// The client's [`TxNote`] for each port (by index in `ServerInfo::ports`), 0 when it
    /// holds no frames for that port.
    pub notes: [AtomicU64; MAX_PORTS],
}

/// What a client notes before each TX burst on a port, so that the server can settle its
/// hand should it die inside the burst: how many of the hand's frames for that port earlier
/// bursts sent, and the queue's mark (`None`: its driver cannot tell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxNote {
    /// Frames of the hand for this port that earlier bursts sent.
    pub sent_before: u32,
    /// The TX queue's mark before the burst.
    pub mark: Option<u32>,
}

impl TxNote {
    const NOTED: u64 = 1 << 63;
    const MARKED: u64 = 1 << 62;

    /// One word, so that a note is never half written.
    pub fn pack(&self) -> u64 {
        let mark = self.mark.map_or(0, |m| Self::MARKED | m as u64);
        Self::NOTED | (self.sent_before as u64 & 0xff_ffff) << 32 | mark
    }
    /// The note a word holds, if any.
    pub fn unpack(v: u64) -> Option<TxNote> {
        (v & Self::NOTED != 0).then(|| TxNote {
            sent_before: (v >> 32) as u32 & 0xff_ffff,
            mark: (v & Self::MARKED != 0).then_some(v as u32),
        })
    }
}

/// The memzone both sides share.
#[repr(C)]
pub struct ServerInfo {
    /// Clients the server serves.
    pub num_clients: u16,
    /// The server's ports, paired in this order: the 1st with the 2nd, the 3rd with the 4th.
    pub num_ports: u16,
    /// The server's port ids.
    pub ports: [u16; MAX_PORTS],
    /// One slot per client.
    pub clients: [ClientSlot; MAX_CLIENTS],
}

impl ServerInfo {
    /// Which of `ports` a frame that came in on `port` leaves by: the 1st and 2nd send to
    /// each other, the 3rd and 4th..., an odd last one to itself. A port the server does not
    /// serve (its frames all come from its own) counts as its first.
    pub fn tx_port_index(&self, port: u16) -> usize {
        let n = self.num_ports as usize;
        match self.ports[..n].iter().position(|p| *p == port) {
            Some(i) if i % 2 == 0 && i + 1 < n => i + 1,
            Some(i) if i % 2 == 0 => i,
            Some(i) => i - 1,
            None => 0,
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

/// Settles what client `c` held when it died or stopped in the middle of sending: the
/// frames it claimed on `ring` and did not finish with. Those its TX queues took stay
/// theirs; the rest go back to the pool. The caller has taken the client's TX queues over
/// (which repairs a queue its poller died inside) and polls none of them. Returns how many
/// frames were freed.
pub fn settle_hand(info: &ServerInfo, c: u16, ring: &MbufRing, ports: &[Port]) -> u64 {
    // The client is gone and nobody else touches its hand until it is settled here.
    let hand = ring.claims();
    if hand.is_empty() {
        return 0;
    }
    let held = hand.len() as u32;
    let slot = &info.clients[c as usize];
    // The hand as the client split it: per port, in ring order. None is ours to free
    // until we know the queue did not take it.
    let mut by_port: Vec<Vec<ManuallyDrop<Mbuf>>> = ports.iter().map(|_| Vec::new()).collect();
    for m in hand {
        by_port[info.tx_port_index(m.port())].push(m);
    }
    let mut free: Vec<Mbuf> = Vec::new();
    for ((frames, port), note) in by_port.iter_mut().zip(ports).zip(&slot.notes) {
        if frames.is_empty() {
            continue;
        }
        let taken = match TxNote::unpack(note.load(Ordering::Acquire)) {
            // No burst of this hand on this port yet.
            None => Some(0),
            Some(TxNote {
                mark: Some(mark),
                sent_before,
            }) => match port.tx_taken_since(c, mark) {
                Ok(Some(n)) => Some(sent_before + n),
                _ => None,
            },
            Some(_) => None,
        };
        let Some(taken) = taken else {
            log::warn!(
                "client {c}: port {} cannot tell which of the {} frames the client was sending it took; they stay in use",
                port.id(),
                frames.len()
            );
            continue;
        };
        // Frames of the hand the queue did not take: nobody else holds them.
        let taken = (taken as usize).min(frames.len());
        free.extend(frames.drain(taken..).map(ManuallyDrop::into_inner));
    }
    let freed = free.len() as u64;
    net::mbuf::free_bulk(&mut free);
    ring.sc_dequeue_finish(held);
    freed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_survives_its_word() {
        for n in [
            TxNote {
                sent_before: 0,
                mark: None,
            },
            TxNote {
                sent_before: 31,
                mark: Some(u32::MAX),
            },
            TxNote {
                sent_before: 5,
                mark: Some(0),
            },
        ] {
            assert_eq!(TxNote::unpack(n.pack()), Some(n));
        }
        assert_eq!(TxNote::unpack(0), None);
    }
}
