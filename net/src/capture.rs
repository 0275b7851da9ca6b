//! Packet capture from running ports, as DPDK's pdump: a capturing process (the `dumpcap`
//! app, a secondary) creates a ring and a pool of copies and hangs a `CaptureRecord`
//! naming them on the queues of a port. Whichever process polls a queue copies each burst
//! into that pool and ring, and the capturer drains the ring into a file. The forwarding
//! path keeps its mbufs: only copies travel, and when the capturer falls behind, copies are
//! dropped and counted, never the packets themselves.
//!
//! A queue's hook is a [`CaptureSlot`] in the port record: the record's address (0 when no
//! capture) and a sequence word whose count is odd while a poller uses the record, beside
//! the pid of the poller that last entered. The poller stores the word, then reads the
//! address; the capturer clears the address, then waits for the word to move on. Both use
//! sequentially consistent operations, so one of them always sees the other, and the
//! record is freed only once no poller can hold it. A poller killed inside never moves the
//! word again: the pid in it lets the capturer see that it is dead and stop waiting.
//! With no capture, the cost on the hot path is one relaxed load per burst.

use crate::mbuf::{Mbuf, PktmbufPool};
use crate::mbuf_ring::{MbufRing, MAX_BURST};
use crate::{Port, PortState};
use eal::ring::{Ring, RingFlags};
use eal::shm::RobustLock;
use eal::shm::ShmSafe;
use eal::{pid_alive, MemzoneFlags};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most bytes of one frame a copy keeps (jumbo frames fit); longer frames are cut, and the
/// copy records the length they had.
pub const MAX_SNAPLEN: u32 = 9600;
/// Copies in flight between the pollers and the capturer.
const COPIES: u32 = 2048;
/// Most frames copied from one burst (larger bursts are rare; the rest count as lost).
const CHUNK: usize = 64;
const _: () = assert!(CHUNK <= MAX_BURST);
/// How long to wait for a poller to leave a record before giving up on freeing it.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of capture; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The EAL failed.
    #[error(transparent)]
    Eal(#[from] eal::Error),
    /// The capture's mbuf pool could not be made.
    #[error(transparent)]
    Pool(#[from] crate::mbuf::PoolError),
    /// Another live process captures the queue.
    #[error("port {port}: {dir} queue {queue} is already captured by process {pid}: stop that capture first")]
    Busy {
        /// The port.
        port: u16,
        /// Which of its queues.
        dir: Direction,
        /// The queue.
        queue: u16,
        /// The capturing process.
        pid: i32,
    },
    /// The port has no queues yet.
    #[error("port {0} has no queues to capture: start the port (in the primary) first")]
    NoQueues(u16),
}

/// Which way a captured frame went; which kind of queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// Received.
    Rx = 0,
    /// Sent.
    Tx = 1,
}

impl Direction {
    /// "rx" or "tx", as drivers name their queues' shared objects.
    pub fn lowercase(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Rx => "RX",
            Direction::Tx => "TX",
        })
    }
}

/// What the capturer learns about each copy, stored in front of the copied bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FrameInfo {
    /// TSC when the burst was received or sent.
    pub tsc: u64,
    /// Length of the frame on the wire (the copy may be shorter).
    pub orig_len: u32,
    /// The port.
    pub port: u16,
    /// The queue.
    pub queue: u16,
    /// Received or sent.
    pub direction: Direction,
}

const INFO_LEN: usize = std::mem::size_of::<FrameInfo>();

/// A queue's hook, in the port record (see the module comment for the protocol).
#[repr(C)]
#[derive(Default)]
pub struct CaptureSlot {
    record: AtomicU64,
    /// The pid of the poller that last entered (high half) and a count (low half), odd
    /// while that poller is inside. Only the queue's poller writes it (one at a time).
    seq: AtomicU64,
}

/// The sequence word of a poller `pid` entering a slot whose word was `word`: the next odd
/// count (a poller killed inside left it odd).
fn entered(word: u64, pid: i32) -> u64 {
    let count = (word as u32).wrapping_add(1) | 1;
    (u64::from(pid as u32) << 32) | u64::from(count)
}

/// The sequence word of the poller that entered with `word` leaving: the count even again.
fn left(word: u64) -> u64 {
    (word & !u64::from(u32::MAX)) | u64::from((word as u32).wrapping_add(1))
}

/// Whether a poller is inside the slot whose sequence word is `word`, and which.
fn inside(word: u64) -> Option<i32> {
    (word as u32 % 2 == 1).then_some((word >> 32) as i32)
}

// SAFETY: repr(C) atomics; `record` is the address of a record in the group's memory.
unsafe impl ShmSafe for CaptureSlot {}

impl CaptureSlot {
    /// Whether a capture hangs on this queue: the one check the hot path makes.
    #[inline(always)]
    pub(crate) fn armed(&self) -> bool {
        self.record.load(Ordering::Relaxed) != 0
    }

    /// Waits until no poller can still be using a record it read before the address was
    /// cleared: it left, or died inside; false if a live poller stayed inside for
    /// `QUIESCE_TIMEOUT` (the caller must then not free the record).
    fn quiesce(&self) -> bool {
        let s = self.seq.load(Ordering::SeqCst);
        let Some(poller) = inside(s) else {
            return true;
        };
        let deadline = Instant::now() + QUIESCE_TIMEOUT;
        while self.seq.load(Ordering::SeqCst) == s {
            if !pid_alive(poller) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }
}

/// What a capture shares with the pollers, in a memzone of the capturer's.
#[repr(C)]
struct CaptureRecord {
    owner: AtomicI32,
    port: AtomicU32,
    snaplen: AtomicU32,
    ring: AtomicU64,
    pool: AtomicU64,
    /// Copies lost because the pool was empty or the ring full.
    dropped: AtomicU64,
    /// Held by the poller enqueueing its copies: one producer at a time, so that the claim
    /// of a poller killed inside its enqueue can be given up by the next one (instead of
    /// every later producer, forwarding included, waiting on it for good).
    producing: RobustLock,
}

// SAFETY: repr(C) atomics; ring and pool are addresses in the group's memory.
unsafe impl ShmSafe for CaptureRecord {}

/// Copies of one burst on their way to a capture, made inside the slot's sequence window.
pub(crate) struct Batch<'a> {
    slot: &'a CaptureSlot,
    /// The slot's sequence word as this poller entered.
    entered: u64,
    record: Option<&'a CaptureRecord>,
    copies: [usize; CHUNK],
    n: usize,
}

impl<'a> Batch<'a> {
    /// Enters the slot and copies up to 64 frames of `pkts` (the rest are counted as lost).
    #[cold]
    #[inline(never)]
    pub(crate) fn copy(
        slot: &'a CaptureSlot,
        pkts: &[Mbuf],
        port: u16,
        queue: u16,
        direction: Direction,
    ) -> Self {
        let word = entered(slot.seq.load(Ordering::Relaxed), eal::own_pid());
        slot.seq.store(word, Ordering::SeqCst);
        let addr = slot.record.load(Ordering::SeqCst);
        // SAFETY: a non-zero address is a live record: it is freed only after its address
        // was cleared and the sequence word (odd since our store) moved on, or this process
        // died, neither of which has happened.
        let record = (addr != 0).then(|| unsafe { &*(addr as *const CaptureRecord) });
        let mut batch = Batch {
            slot,
            entered: word,
            record,
            copies: [0; CHUNK],
            n: 0,
        };
        if let Some(rec) = record {
            // SAFETY: the record's pool is live as long as the record is.
            let pool = unsafe { PktmbufPool::from_addr(rec.pool.load(Ordering::Relaxed)) };
            let info = FrameInfo {
                tsc: eal::timer::rdtsc(),
                orig_len: 0,
                port,
                queue,
                direction,
            };
            let snaplen = rec.snaplen.load(Ordering::Relaxed) as usize;
            for p in pkts.iter().take(CHUNK) {
                let Some(copy) = pool
                    .as_ref()
                    .and_then(|pool| copy_frame(pool, p, info, snaplen))
                else {
                    rec.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                batch.copies[batch.n] = copy.into_addr();
                batch.n += 1;
            }
            let over = pkts.len().saturating_sub(CHUNK) as u64;
            if over > 0 {
                rec.dropped.fetch_add(over, Ordering::Relaxed);
            }
            eal::fault_point!("capture.copied");
        }
        batch
    }

    /// Hands the copies of the first `sent` frames to the capturer and leaves the slot;
    /// copies of frames that were not sent are freed.
    pub(crate) fn commit(mut self, sent: usize) {
        let Some(rec) = self.record else { return };
        let keep = sent.min(self.n);
        // The capture's ring is an MbufRing: the copies it takes (their mbufs given up here,
        // never dropped below, still naming this process as holder: what a ring holds is
        // the ring's) are what `Capture::recv` hands out.
        // SAFETY: the ring lives as long as the record.
        let done = match unsafe { Ring::from_addr(rec.ring.load(Ordering::Relaxed)) } {
            Some(ring) => {
                let producing = rec.producing.lock();
                if producing.recovered_from.is_some() {
                    ring.abandon_enqueue_claims();
                }
                ring.enqueue_burst(&self.copies[..keep])
            }
            None => 0,
        };
        rec.dropped
            .fetch_add((keep - done) as u64, Ordering::Relaxed);
        for &a in &self.copies[done..self.n] {
            // SAFETY: these copies were made above and are still ours.
            drop(unsafe { Mbuf::from_addr(a) });
        }
        self.n = 0;
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for &a in &self.copies[..self.n] {
            // SAFETY: copies not committed are still ours.
            drop(unsafe { Mbuf::from_addr(a) });
        }
        self.slot.seq.store(left(self.entered), Ordering::SeqCst);
    }
}

/// A copy of `p`'s first `snaplen` bytes behind a [`FrameInfo`], or None if the pool is empty.
fn copy_frame(pool: &PktmbufPool, p: &Mbuf, mut info: FrameInfo, snaplen: usize) -> Option<Mbuf> {
    let mut copy = pool.alloc()?;
    info.orig_len = p.pkt_len();
    let caplen = (p.pkt_len() as usize).min(snaplen);
    let room = copy.append((INFO_LEN + caplen) as u16)?;
    let (head, mut rest) = room.split_at_mut(INFO_LEN);
    // SAFETY: FrameInfo is repr(C) plain data of INFO_LEN bytes; head is INFO_LEN bytes.
    unsafe { std::ptr::write_unaligned(head.as_mut_ptr() as *mut FrameInfo, info) };
    for seg in p.segments() {
        if rest.is_empty() {
            break;
        }
        let k = seg.len().min(rest.len());
        rest[..k].copy_from_slice(&seg[..k]);
        rest = &mut rest[k..];
    }
    Some(copy)
}

/// A copy taken from a capture: what the poller recorded and the bytes it kept. It cannot
/// outlive its capture, whose pool it returns to.
pub struct CapturedFrame<'a> {
    mbuf: Mbuf,
    _capture: std::marker::PhantomData<&'a Capture>,
}

impl CapturedFrame<'_> {
    /// Where the frame was seen.
    pub fn info(&self) -> FrameInfo {
        // SAFETY: every copy starts with a FrameInfo written by copy_frame.
        unsafe { std::ptr::read_unaligned(self.mbuf.data().as_ptr() as *const FrameInfo) }
    }
    /// The frame's bytes as copied.
    pub fn data(&self) -> &[u8] {
        &self.mbuf.data()[INFO_LEN..]
    }
}

/// A capture of one port, owned by this process: its hooks come off the queues and its
/// ring, pool and record are freed when it drops.
pub struct Capture {
    port: Port,
    record: &'static CaptureRecord,
    ring: MbufRing,
    /// The queues hooked, and which way.
    hooked: Vec<(Direction, u16)>,
}

/// The names of the objects of process `pid`'s capture of `port`: ring and pool, and the
/// record's memzone.
fn names(pid: i32, port: u16) -> (String, String) {
    (
        format!("capture_{pid}_{port}"),
        format!("CAPTURE_{pid}_{port}"),
    )
}

impl Capture {
    /// Hooks every queue of `port` in the `directions` given; copies keep up to `snaplen`
    /// bytes of each frame, and never more than [`MAX_SNAPLEN`] or the longest frame the
    /// port's MTU allows (with two VLAN tags), which sizes the pool of copies.
    pub fn start(port: &Port, directions: &[Direction], snaplen: u32) -> Result<Capture, Error> {
        let eal = eal::eal()?;
        let longest_frame = port.mtu() + 14 + 2 * 4;
        let snaplen = snaplen.clamp(1, MAX_SNAPLEN.min(longest_frame));
        let pid = eal::own_pid();
        let (ring_name, record_name) = names(pid, port.id());
        let ring = MbufRing::create(&ring_name, COPIES, RingFlags::SC_DEQ)?;
        let data_room = (INFO_LEN as u32 + snaplen) as u16;
        let pool = match PktmbufPool::create(&ring_name, COPIES - 1, 0, 0, data_room) {
            Ok(p) => p,
            Err(e) => {
                let _ = ring.free();
                return Err(e.into());
            }
        };
        let len = std::mem::size_of::<CaptureRecord>() as u64;
        let mz = match eal.memzone_reserve(&record_name, len, 64, MemzoneFlags::empty()) {
            Ok(mz) => mz,
            Err(e) => {
                let _ = ring.free();
                let _ = pool.mempool().free();
                return Err(e.into());
            }
        };
        // SAFETY: the memzone is zeroed, large enough and ours for the capture's life; zero
        // is a valid CaptureRecord.
        let record: &'static CaptureRecord = unsafe { &*mz.as_ptr::<CaptureRecord>() };
        record.owner.store(pid, Ordering::Relaxed);
        record.port.store(port.id() as u32, Ordering::Relaxed);
        record.snaplen.store(snaplen, Ordering::Relaxed);
        record.ring.store(ring.addr(), Ordering::Relaxed);
        record.pool.store(pool.addr(), Ordering::Release);
        let mut capture = Capture {
            port: port.clone(),
            record,
            ring,
            hooked: Vec::new(),
        };
        let queues = |d: Direction| match d {
            Direction::Rx => port.nb_rx_queues(),
            Direction::Tx => port.nb_tx_queues(),
        };
        if directions.iter().all(|d| queues(*d) == 0) || port.state() == PortState::Unused {
            return Err(Error::NoQueues(port.id()));
        }
        let addr = record as *const CaptureRecord as u64;
        for &dir in directions {
            for q in 0..queues(dir) {
                capture.hook(dir, q, addr)?;
            }
        }
        Ok(capture)
    }

    fn hook(&mut self, dir: Direction, q: u16, addr: u64) -> Result<(), Error> {
        let slot = self.port.record().capture_slot(q, dir);
        loop {
            match slot
                .record
                .compare_exchange(0, addr, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    self.hooked.push((dir, q));
                    return Ok(());
                }
                Err(other) => {
                    // SAFETY: a hooked address is a live record (see Batch::copy).
                    let owner = unsafe { &*(other as *const CaptureRecord) }
                        .owner
                        .load(Ordering::Relaxed);
                    if pid_alive(owner) {
                        return Err(Error::Busy {
                            port: self.port.id(),
                            dir,
                            queue: q,
                            pid: owner,
                        });
                    }
                    // Its capturer died before the primary noticed: clean up after it.
                    release_of(owner);
                }
            }
        }
    }

    /// Appends up to `max` captured frames to `out`; returns how many.
    pub fn recv<'a>(&'a self, out: &mut Vec<CapturedFrame<'a>>, max: usize) -> usize {
        // The pollers pass their copies to us through the ring (Batch::commit).
        self.ring.sc_dequeue_burst(max.min(CHUNK), |mbuf| {
            out.push(CapturedFrame {
                mbuf,
                _capture: std::marker::PhantomData,
            })
        })
    }

    /// The bytes kept of each frame.
    pub fn snaplen(&self) -> u32 {
        self.record.snaplen.load(Ordering::Relaxed)
    }

    /// Copies lost so far because this capturer fell behind.
    pub fn dropped(&self) -> u64 {
        self.record.dropped.load(Ordering::Relaxed)
    }

    /// The port captured.
    pub fn port(&self) -> &Port {
        &self.port
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let addr = self.record as *const CaptureRecord as u64;
        let rec = self.port.record();
        let slots: Vec<&CaptureSlot> = self
            .hooked
            .iter()
            .map(|&(dir, q)| rec.capture_slot(q, dir))
            .collect();
        if !unhook(&slots, addr) {
            log::warn!(
                "a poller of port {} did not leave the capture: its ring and pool stay allocated",
                self.port.id()
            );
            return;
        }
        free_objects(self.record);
    }
}

/// Takes the record at `addr` off `slots` and waits for the pollers to leave it; false if
/// one stayed (then nothing may be freed).
fn unhook(slots: &[&CaptureSlot], addr: u64) -> bool {
    for s in slots {
        let _ = s
            .record
            .compare_exchange(addr, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
    slots.iter().all(|s| s.quiesce())
}

/// Frees a capture's ring, pool (with every copy, wherever it is) and record, once no
/// queue refers to it. Whoever clears the owner does it, so that the capturer and the
/// primary cleaning up after it never both do.
fn free_objects(record: &CaptureRecord) {
    let pid = record.owner.swap(0, Ordering::AcqRel);
    let Ok(eal) = eal::eal() else { return };
    if pid == 0 {
        return;
    }
    let (name, record_name) = names(pid, record.port.load(Ordering::Relaxed) as u16);
    if let Ok(ring) = Ring::lookup(&name) {
        let _ = ring.free();
    }
    if let Ok(pool) = PktmbufPool::lookup(&name) {
        let _ = pool.mempool().free();
    }
    let _ = eal.memzone_free(&record_name);
}

/// Takes the captures of an exited process off every queue and frees what they held (the
/// primary calls this when a secondary exits; a capturer calls it for a dead predecessor).
pub(crate) fn release_of(pid: i32) {
    let Ok(eal) = eal::eal() else { return };
    let mine = format!("CAPTURE_{pid}_");
    for mz in eal.memzone_list() {
        if !mz.name().starts_with(&mine) {
            continue;
        }
        let addr = mz.addr();
        // SAFETY: a memzone of this name holds a CaptureRecord (start() made it).
        let record = unsafe { &*mz.as_ptr::<CaptureRecord>() };
        // Every slot is quiesced, not only those still naming the record: the capturer may
        // have cleared some itself and died before a poller inside them left.
        let slots: Vec<&CaptureSlot> = crate::ethdev::capture_slots().collect();
        let hooked = slots
            .iter()
            .filter(|s| s.record.load(Ordering::SeqCst) == addr)
            .count();
        if unhook(&slots, addr) {
            free_objects(record);
            log::info!("removed the capture of exited process {pid} from {hooked} queue(s)");
        } else {
            log::warn!("a poller did not leave the capture of exited process {pid}: its memory stays allocated");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_word_names_the_poller_inside_and_its_count_stays_odd_inside() {
        let first = entered(0, 42);
        assert_eq!(inside(first), Some(42));
        assert_eq!(inside(left(first)), None);
        // A poller killed inside left the count odd: the next one's is odd again, and the
        // word differs, so a capturer waiting on the dead one's word sees it move.
        let next = entered(first, 43);
        assert_eq!(inside(next), Some(43));
        assert_ne!(next, first);
        // The count wraps without touching the pid.
        let last = entered(u64::from(u32::MAX - 1), 7);
        assert_eq!((inside(last), last as u32), (Some(7), u32::MAX));
        assert_eq!((inside(left(last)), left(last) >> 32), (None, 7));
        assert_eq!(inside(entered(last, 8)), Some(8));
    }
}
