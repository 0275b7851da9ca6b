//! A vhost-user backend that lies to the driver on purpose, so that the tests can check
//! that net_virtio_user holds against a device that writes nonsense into its used rings
//! (`tests/virtio_liar.rs`). It listens on a unix socket, takes the set-up the frontend
//! sends (features, memory table, one queue pair), sends N checked frames into the RX ring
//! at a given rate, checks the frames coming back on the TX ring, and now and then tells
//! one kind of lie:
//!
//! `vhost_liar SOCKET LIE N PPS [packed|packed-in-order|split-in-order]`, LIE one of
//! - `none`: an honest device;
//! - `bad-id`: every 7th RX frame is followed by a used entry whose id is past the ring;
//! - `dup-id`: every 7th TX chain is returned twice in a row;
//! - `long-len`: every 7th RX frame's used length is beyond its buffer (the frame is lost);
//! - `used-idx`: every 7th TX completion moves the used index 4 entries further than the
//!   chains the driver made available (those entries name ids past the ring);
//! - `stop-tx`: after 100 TX chains, TX chains are neither read nor returned.
//!
//! With `packed` it also offers packed rings (VIRTIO_F_RING_PACKED, virtio 1.2 section
//! 2.8) and serves them when the frontend agrees; lies are told on split rings used in any
//! order only, so LIE must otherwise be `none`. `packed-in-order` offers VIRTIO_F_IN_ORDER
//! as well, `split-in-order` VIRTIO_F_IN_ORDER without packed rings; when the frontend
//! agrees on it, the device completes TX chains in batches, as the spec lets a device that
//! uses buffers in order: one used element naming the batch's last chain stands for every
//! chain of the batch (`TX_BATCHES`): on a packed ring a used descriptor at the batch's
//! first slot, on a split ring one used ring entry (the used index moves by 1 for the
//! batch). RX buffers are still used one by one (their lengths are needed).
//!
//! It is honest the rest of the time, so that traffic flows. It prints `LISTENING`, then
//! `RUNNING` once both rings are set up, then, when the N frames were sent and came back
//! (or nothing came back for 3 s), `LIAR sent=.. ok=.. bad=.. dup=.. lost_to_lies=..
//! lies=.. tx_completed=.. tx_batches=..` (`tx_batches`: the used elements that completed
//! TX chains in order, fewer than the chains when batches held more than one). It serves
//! until the frontend hangs up.

use memmap2::{MmapOptions, MmapRaw};
use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use system_tests::frames::{build_frame, check_frame};
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    BackendReqHandler, Error, GpuBackend, Result, VhostUserBackendReqHandlerMut,
};
use vhost::VhostUserMemoryRegionBase;

/// A lie is told on every this many frames or completions.
const EVERY: u64 = 7;
/// TX chains `stop-tx` completes before it stops.
const STOP_AFTER: u64 = 100;
/// RX frames sent per pass at most.
const RX_BURST: u32 = 32;
/// Frames sent and not yet back at most.
const WINDOW: u32 = 64;
/// Extra used entries `used-idx` writes past the chains made available.
const JUMP: u32 = 4;
/// The virtio-net header of a VERSION_1 device, before each frame.
const NET_HDR_LEN: usize = 12;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
/// The device asks not to be kicked: it polls.
const USED_F_NO_NOTIFY: u16 = 1;
/// VIRTIO_F_VERSION_1, offered always (no mergeable buffers, no control queue).
const VERSION_1: u64 = 1 << 32;
/// VIRTIO_F_RING_PACKED, offered with `packed` and `packed-in-order`.
const RING_PACKED: u64 = 1 << 34;
/// VIRTIO_F_IN_ORDER, offered with `packed-in-order` and `split-in-order`.
const IN_ORDER: u64 = 1 << 35;
/// The most TX chains each batch completes, in turn, on rings used in order (fewer when
/// fewer wait). No run of these, around the turn, adds up to 32, the most the driver takes
/// back at once: a take of 32 from the start of a batch ends inside one, where the driver
/// must write the rest of a packed batch's used descriptor itself, or leave a split
/// batch's used entry for the rest of the batch.
const TX_BATCHES: [usize; 4] = [1, 4, 13, 20];
/// A packed descriptor's flags: available and used, each meaning what it does against a
/// wrap counter.
const DESC_F_AVAIL: u16 = 1 << 7;
const DESC_F_USED: u16 = 1 << 15;
/// A packed ring position's wrap counter bit; the slot is in the bits below (as in
/// SET_VRING_BASE).
const WRAP: u16 = 1 << 15;
/// RING_EVENT_FLAGS_DISABLE in the device event area: no notifications, the device polls.
const EVENT_F_DISABLE: u16 = 1;
/// TX chains `dup-id` keeps back (see `Device::pass`): more than the duplicates the driver
/// may not have read yet.
const DUP_LAG: usize = 32;
/// How long a pause in TX before the chains kept back are returned.
const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// How long without a frame coming back ends the count.
const QUIET: Duration = Duration::from_secs(3);

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("vhost_liar: {msg}");
    std::process::exit(2);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lie {
    None,
    BadId,
    DupId,
    LongLen,
    UsedIdx,
    StopTx,
}

impl Lie {
    fn parse(s: &str) -> Option<Lie> {
        Some(match s {
            "none" => Lie::None,
            "bad-id" => Lie::BadId,
            "dup-id" => Lie::DupId,
            "long-len" => Lie::LongLen,
            "used-idx" => Lie::UsedIdx,
            "stop-tx" => Lie::StopTx,
            _ => return None,
        })
    }
}

/// One region of the frontend's memory, mapped here.
struct Region {
    gpa: u64,
    uva: u64,
    len: u64,
    map: MmapRaw,
}

/// How the frontend names an address: descriptors hold guest addresses, SET_VRING_ADDR
/// the frontend's own virtual addresses.
#[derive(Clone, Copy)]
enum Space {
    Guest,
    User,
}

/// The frontend's memory as mapped here.
#[derive(Default)]
struct Memory(Vec<Region>);

impl Memory {
    /// This process's address of `len` bytes at `addr`, when a region holds them all.
    fn local(&self, addr: u64, len: u64, space: Space) -> Option<usize> {
        self.0.iter().find_map(|r| {
            let start = match space {
                Space::Guest => r.gpa,
                Space::User => r.uva,
            };
            let off = addr.checked_sub(start)?;
            (off.checked_add(len)? <= r.len).then(|| r.map.as_mut_ptr() as usize + off as usize)
        })
    }
}

/// A descriptor of the split ring.
#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// What the frontend said about a ring.
#[derive(Clone, Copy, Default)]
struct RingSetup {
    num: u16,
    desc: u64,
    avail: u64,
    used: u64,
    base: u16,
}

/// A split ring being served, its parts at this process's addresses.
struct SplitRing {
    size: u16,
    desc: usize,
    avail: usize,
    used: usize,
    next_avail: u16,
    used_idx: u16,
    /// The driver's available index as last read, and the chains it made available since
    /// the ring started.
    avail_idx_seen: u16,
    avail_seen: u64,
    /// Used entries written since the ring started.
    written: u64,
    /// For each chain completed honestly that the driver may not have taken back yet,
    /// oldest first, how many entries it has read for sure once it has (those up to the
    /// chain's own entry; for a chain inside an in-order batch, those before the batch's);
    /// and how many older chains it has taken back for sure.
    honest_unread: VecDeque<u64>,
    honest_read: u64,
    /// Entries the driver has read for sure (see `honest_unread`).
    read: u64,
}

/// A chain's buffers: this process's address, length, and whether the device writes it.
type Chain = Vec<(usize, u32, bool)>;

impl SplitRing {
    fn new(s: &RingSetup, mem: &Memory) -> Option<SplitRing> {
        let n = s.num as u64;
        let ring = SplitRing {
            size: s.num,
            desc: mem.local(s.desc, 16 * n, Space::User)?,
            avail: mem.local(s.avail, 4 + 2 * n, Space::User)?,
            used: mem.local(s.used, 4 + 8 * n, Space::User)?,
            next_avail: s.base,
            used_idx: s.base,
            avail_idx_seen: s.base,
            avail_seen: 0,
            written: 0,
            honest_unread: VecDeque::new(),
            honest_read: 0,
            read: 0,
        };
        (s.num.is_power_of_two()).then_some(ring)
    }

    /// Chains the driver made available and the device has not taken yet.
    fn holds(&self) -> u16 {
        word(self.avail + 2)
            .load(Ordering::Acquire)
            .wrapping_sub(self.next_avail)
    }

    /// The next chain the driver made available: its head and buffers.
    fn next_chain(&mut self, mem: &Memory) -> Option<(u16, Chain)> {
        if self.holds() == 0 {
            return None;
        }
        let slot = (self.next_avail & (self.size - 1)) as usize;
        // SAFETY: slot < size: inside the available ring, published by the index read above.
        let head = unsafe { std::ptr::read_volatile((self.avail + 4 + 2 * slot) as *const u16) };
        self.next_avail = self.next_avail.wrapping_add(1);
        let mut chain = Vec::new();
        let mut i = head;
        for _ in 0..self.size {
            if i >= self.size {
                fail(format!("descriptor index {i} past a ring of {}", self.size));
            }
            // SAFETY: i < size: inside the descriptor table.
            let d = unsafe { std::ptr::read_volatile((self.desc as *const Desc).add(i as usize)) };
            let at = mem
                .local(d.addr, d.len as u64, Space::Guest)
                .unwrap_or_else(|| {
                    fail(format!(
                        "a buffer at {:#x} outside the memory table",
                        d.addr
                    ))
                });
            chain.push((at, d.len, d.flags & DESC_F_WRITE != 0));
            if d.flags & DESC_F_NEXT == 0 {
                return Some((head, chain));
            }
            i = d.next;
        }
        fail("a descriptor chain longer than the ring")
    }

    /// Used entries that can be written without overwriting one the driver may not have
    /// read. The extra entries of a lie could otherwise lap the ring: the driver holds at
    /// most `size` chains, so it has taken back all but the last `size` made available,
    /// and read every entry written before their honest ones.
    fn room(&mut self) -> u64 {
        let idx = word(self.avail + 2).load(Ordering::Acquire);
        self.avail_seen += u64::from(idx.wrapping_sub(self.avail_idx_seen));
        self.avail_idx_seen = idx;
        let taken = self.avail_seen.saturating_sub(self.size.into());
        while self.honest_read < taken {
            let Some(read) = self.honest_unread.pop_front() else {
                break;
            };
            self.read = read;
            self.honest_read += 1;
        }
        u64::from(self.size) - (self.written - self.read)
    }

    /// Writes a used entry (published by `publish`); `honest` when it completes a chain
    /// the device took.
    fn push_used(&mut self, id: u32, len: u32, honest: bool) {
        if honest {
            self.honest_unread.push_back(self.written + 1);
        }
        self.written += 1;
        let slot = (self.used_idx & (self.size - 1)) as usize;
        let at = self.used + 4 + 8 * slot;
        // SAFETY: slot < size: inside the used ring, which only the device writes.
        unsafe {
            std::ptr::write_volatile(at as *mut u32, id);
            std::ptr::write_volatile((at + 4) as *mut u32, len);
        }
        self.used_idx = self.used_idx.wrapping_add(1);
    }

    /// Writes one used entry for the chains `batch` (read in this order, in order with the
    /// ring), naming the last (published by `publish`).
    fn push_used_batch(&mut self, batch: &[u16], len: u32) {
        let Some((&last, inside)) = batch.split_last() else {
            return;
        };
        // Taking a chain inside the batch reads none of its entry.
        let before = self.written;
        self.honest_unread.extend(inside.iter().map(|_| before));
        self.push_used(last.into(), len, true);
    }

    /// Makes the entries written so far visible to the driver.
    fn publish(&self) {
        word(self.used + 2).store(self.used_idx, Ordering::Release);
    }
}

/// The 16-bit word at `addr`: a ring index or flags word that the ring's `new` checked is
/// inside a mapped region.
fn word(addr: usize) -> &'static AtomicU16 {
    // SAFETY: inside a mapped region (see above), which stays mapped while the ring is
    // served; 2-aligned as the virtio spec lays rings out; the driver uses it atomically.
    unsafe { &*(addr as *const AtomicU16) }
}

/// A descriptor of the packed ring.
#[repr(C)]
#[derive(Clone, Copy)]
struct PackedDesc {
    addr: u64,
    len: u32,
    id: u16,
    flags: u16,
}

/// The packed ring position `n` slots after `pos`, the wrap counter flipped past the end.
fn advance(pos: u16, n: u16, size: u16) -> u16 {
    let slot = (pos & !WRAP) + n;
    if slot >= size {
        (slot - size) | ((pos & WRAP) ^ WRAP)
    } else {
        slot | (pos & WRAP)
    }
}

/// A packed ring being served: one ring of descriptors, read in order, each chain's used
/// descriptor written back in the order the device completes them.
struct PackedRing {
    size: u16,
    desc: usize,
    /// The next slot to read and the next to write a used descriptor at, each with the
    /// device's wrap counter in bit 15.
    avail: u16,
    used: u16,
    /// Descriptors of the chain each buffer id names, while the device holds it: how far
    /// its used descriptor moves the used position.
    slots: Vec<u16>,
}

impl PackedRing {
    /// `s.base` (SET_VRING_BASE) is where both positions start; `s.used` is the device
    /// event area, where the device says it polls.
    fn new(s: &RingSetup, mem: &Memory) -> Option<PackedRing> {
        if s.num == 0 || s.num > WRAP || s.base & !WRAP >= s.num {
            return None;
        }
        let ring = PackedRing {
            size: s.num,
            desc: mem.local(s.desc, 16 * u64::from(s.num), Space::User)?,
            avail: s.base,
            used: s.base,
            slots: vec![0; s.num.into()],
        };
        // The driver event area is not read (we poll), but must be the driver's memory.
        mem.local(s.avail, 4, Space::User)?;
        let event = mem.local(s.used, 4, Space::User)?;
        word(event + 2).store(EVENT_F_DISABLE, Ordering::Relaxed);
        Some(ring)
    }

    fn desc(&self, slot: u16) -> *mut PackedDesc {
        (self.desc as *mut PackedDesc).wrapping_add(slot.into())
    }

    /// The flags word of the descriptor at `slot`.
    fn flags(&self, slot: u16) -> &'static AtomicU16 {
        word(self.desc + 16 * usize::from(slot) + 14)
    }

    /// The next chain the driver made available: its buffer id and buffers.
    fn next_chain(&mut self, mem: &Memory) -> Option<(u16, Chain)> {
        let wrap = self.avail & WRAP != 0;
        // Acquire: the chain's descriptors are read after their first's flags.
        let f = self.flags(self.avail & !WRAP).load(Ordering::Acquire);
        if (f & DESC_F_AVAIL != 0) != wrap || (f & DESC_F_USED != 0) == wrap {
            return None;
        }
        let mut chain = Vec::new();
        let mut pos = self.avail;
        for _ in 0..self.size {
            // SAFETY: the slot is below size: inside the descriptor ring (checked by `new`),
            // made available by the driver, which leaves it alone until it is used.
            let d = unsafe { std::ptr::read_volatile(self.desc(pos & !WRAP)) };
            let at = mem
                .local(d.addr, d.len.into(), Space::Guest)
                .unwrap_or_else(|| {
                    fail(format!(
                        "a buffer at {:#x} outside the memory table",
                        d.addr
                    ))
                });
            chain.push((at, d.len, d.flags & DESC_F_WRITE != 0));
            pos = advance(pos, 1, self.size);
            if d.flags & DESC_F_NEXT == 0 {
                // The buffer id is the chain's last descriptor's.
                let Some(slots) = self.slots.get_mut(usize::from(d.id)) else {
                    fail(format!("buffer id {} past a ring of {}", d.id, self.size));
                };
                *slots = chain.len() as u16;
                self.avail = pos;
                return Some((d.id, chain));
            }
        }
        fail("a descriptor chain longer than the ring")
    }

    /// Writes the used descriptor of chain `id` at the used position, visible at once.
    fn push_used(&mut self, id: u16, len: u32) {
        self.push_used_batch(&[id], len);
    }

    /// Writes one used descriptor for the chains `batch` (read in this order, in order
    /// with the ring) at the used position, naming the last, visible at once; the used
    /// position moves past them all.
    fn push_used_batch(&mut self, batch: &[u16], len: u32) {
        let Some(&id) = batch.last() else {
            return;
        };
        let slot = self.used & !WRAP;
        let d = self.desc(slot);
        // SAFETY: slot < size: inside the descriptor ring; the slot is one the device has
        // read (the used position never passes the available one), so the driver waits for
        // its flags.
        unsafe {
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*d).id), id);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*d).len), len);
        }
        let f = if self.used & WRAP != 0 {
            DESC_F_AVAIL | DESC_F_USED
        } else {
            0
        };
        // Release: the id and length are seen before the flags that say used.
        self.flags(slot).store(f, Ordering::Release);
        for &chain in batch {
            self.used = advance(self.used, self.slots[usize::from(chain)], self.size);
        }
    }
}

/// A ring being served, split or packed as the features agreed say.
enum Ring {
    Split(SplitRing),
    Packed(PackedRing),
}

impl Ring {
    /// Starts serving a ring set up as `s`, telling the driver not to kick: we poll.
    fn start(s: &RingSetup, mem: &Memory, packed: bool) -> Option<Ring> {
        if packed {
            return PackedRing::new(s, mem).map(Ring::Packed);
        }
        let ring = SplitRing::new(s, mem)?;
        word(ring.used).store(USED_F_NO_NOTIFY, Ordering::Relaxed);
        Some(Ring::Split(ring))
    }

    fn size(&self) -> u16 {
        match self {
            Ring::Split(r) => r.size,
            Ring::Packed(r) => r.size,
        }
    }

    /// The split ring, for a lie (lies are told on split rings used in any order only:
    /// `main` refuses them otherwise).
    fn split(&mut self) -> &mut SplitRing {
        match self {
            Ring::Split(r) => r,
            Ring::Packed(_) => fail("a lie on a packed ring"),
        }
    }

    fn next_chain(&mut self, mem: &Memory) -> Option<(u16, Chain)> {
        match self {
            Ring::Split(r) => r.next_chain(mem),
            Ring::Packed(r) => r.next_chain(mem),
        }
    }

    /// See [`SplitRing::room`]; a packed ring has a slot for the used descriptor of every
    /// chain read, and no lies add any.
    fn room(&mut self) -> u64 {
        match self {
            Ring::Split(r) => r.room(),
            Ring::Packed(r) => r.size.into(),
        }
    }

    /// Completes chain `id` with `len` bytes written.
    fn push_used(&mut self, id: u16, len: u32) {
        match self {
            Ring::Split(r) => r.push_used(id.into(), len, true),
            Ring::Packed(r) => r.push_used(id, len),
        }
    }

    /// Completes the chains `batch`, in order with the ring, with one used element naming
    /// the last (the features agreed on IN_ORDER).
    fn push_used_batch(&mut self, batch: &[u16], len: u32) {
        match self {
            Ring::Split(r) => r.push_used_batch(batch, len),
            Ring::Packed(r) => r.push_used_batch(batch, len),
        }
    }

    /// Makes the used entries written so far visible (a packed ring's are at once).
    fn publish(&self) {
        if let Ring::Split(r) = self {
            r.publish();
        }
    }

    /// Where the device stopped (GET_VRING_BASE): the used index, or the used position
    /// and its wrap counter.
    fn used_base(&self) -> u16 {
        match self {
            Ring::Split(r) => r.used_idx,
            Ring::Packed(r) => r.used,
        }
    }
}

/// The frames sent and what came back.
struct Traffic {
    n: u32,
    pps: u64,
    start: Option<Instant>,
    last_progress: Instant,
    sent: u32,
    ok: u32,
    bad: u32,
    dup: u32,
    lost_to_lies: u32,
    lies: u64,
    tx_completed: u64,
    /// The in-order batches TX chains were completed in, one used element each.
    tx_batches: u64,
    /// TX chains read and not yet returned (`dup-id`).
    tx_waiting: VecDeque<u16>,
    seen: HashSet<u32>,
    reported: bool,
}

struct Device {
    lie: Lie,
    /// The features offered: VERSION_1; and RING_PACKED with `packed`, RING_PACKED and
    /// IN_ORDER with `packed-in-order`, IN_ORDER with `split-in-order`.
    offered: u64,
    /// Whether the frontend agreed on packed rings, and on using the rings in order.
    packed: bool,
    in_order: bool,
    /// The entry of `TX_BATCHES` the next batch takes its size from.
    tx_batch_turn: usize,
    mem: Memory,
    setup: [RingSetup; 2],
    /// RX (0) and TX (1), while the driver runs them.
    live: [Option<Ring>; 2],
    t: Traffic,
}

/// The used entries `lie` adds to the `n`th TX completion.
fn tx_lie_entries(lie: Lie, n: u64) -> u64 {
    match lie {
        _ if !n.is_multiple_of(EVERY) => 0,
        Lie::DupId => 1,
        Lie::UsedIdx => JUMP.into(),
        _ => 0,
    }
}

/// Returns TX chain `head` to the driver, with the lie of every `EVERY`th; false when the
/// used ring has no room for that yet.
fn complete_tx(tx: &mut Ring, t: &mut Traffic, lie: Lie, head: u16) -> bool {
    let extra = tx_lie_entries(lie, t.tx_completed + 1);
    if tx.room() <= extra {
        return false;
    }
    tx.push_used(head, 0);
    t.tx_completed += 1;
    for k in 0..extra as u32 {
        let tx = tx.split();
        let id = if lie == Lie::DupId {
            head.into()
        } else {
            u32::from(tx.size) + k
        };
        tx.push_used(id, 0, false);
    }
    t.lies += u64::from(extra > 0);
    true
}

fn lock(d: &Mutex<Device>) -> MutexGuard<'_, Device> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

impl Device {
    /// One round of device work; false when there was none.
    fn pass(&mut self) -> bool {
        let Device {
            lie,
            in_order,
            tx_batch_turn,
            mem,
            live,
            t,
            ..
        } = self;
        let [Some(rx), Some(tx)] = live else {
            return false;
        };
        let start = *t.start.get_or_insert_with(|| {
            println!("RUNNING");
            Instant::now()
        });
        let mut work = false;
        let due = ((start.elapsed().as_nanos() as u64 * t.pps / 1_000_000_000) as u32).min(t.n);
        // A burst at most per pass, however late the pass, and at most WINDOW frames out
        // and not back (but for `stop-tx`, whose point is a TX ring that fills): the RX
        // ring holds as many frames as the TX ring, which then could not take them all.
        let due = due.min(t.sent + RX_BURST);
        // Frames of the driver's own come back too (counted bad): never fewer than none out.
        let out = |t: &Traffic| t.sent.saturating_sub(t.ok + t.bad + t.dup + t.lost_to_lies);
        let window = |t: &Traffic| *lie == Lie::StopTx || out(t) < WINDOW;
        // Room for the frame's entry and a lie's.
        while t.sent < due && window(t) && rx.room() >= 2 {
            let Some((head, chain)) = rx.next_chain(mem) else {
                break;
            };
            let frame = build_frame(t.sent);
            let mut bytes = vec![0u8; NET_HDR_LEN];
            bytes[10] = 1; // num_buffers
            bytes.extend_from_slice(&frame);
            let writable: u32 = chain.iter().filter(|b| b.2).map(|b| b.1).sum();
            let mut left = &bytes[..];
            for &(at, len, _) in chain.iter().filter(|b| b.2) {
                let k = left.len().min(len as usize);
                // SAFETY: `at` maps `len` bytes of a buffer the driver gave the device.
                unsafe { std::ptr::copy_nonoverlapping(left.as_ptr(), at as *mut u8, k) };
                left = &left[k..];
            }
            if !left.is_empty() {
                fail(format!(
                    "RX buffers of {writable} bytes for a frame of {}",
                    bytes.len()
                ));
            }
            t.sent += 1;
            let nth = u64::from(t.sent).is_multiple_of(EVERY);
            if *lie == Lie::LongLen && nth {
                rx.push_used(head, writable + 1);
                t.lost_to_lies += 1;
                t.lies += 1;
            } else {
                rx.push_used(head, bytes.len() as u32);
            }
            // Only while the device holds a quarter of the ring, so that the extra entries
            // never take the used index past the chains in flight (that is `used-idx`).
            if *lie == Lie::BadId && nth && rx.split().holds() >= rx.size() / 4 {
                let rx = rx.split();
                rx.push_used(u32::from(rx.size) + 1000, 64, false);
                t.lies += 1;
            }
            work = true;
        }
        rx.publish();
        // `dup-id` completes each chain only once DUP_LAG newer ones wait: a duplicate is
        // then read in the same look at the used ring as its original, before the driver
        // can give that head to a new chain (a duplicate read after that would look like
        // an honest completion).
        let lag = if *lie == Lie::DupId { DUP_LAG } else { 0 };
        let stopped = |t: &Traffic| {
            *lie == Lie::StopTx && t.tx_completed + t.tx_waiting.len() as u64 >= STOP_AFTER
        };
        while !stopped(t) {
            let Some((head, chain)) = tx.next_chain(mem) else {
                break;
            };
            let mut data = Vec::new();
            for &(at, len, _) in chain.iter().filter(|b| !b.2) {
                // SAFETY: `at` maps `len` bytes of a buffer the driver gave the device.
                data.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(at as *const u8, len as usize)
                });
            }
            match data.get(NET_HDR_LEN..).and_then(check_frame) {
                Some(i) if i < t.n && t.seen.insert(i) => t.ok += 1,
                Some(_) => t.dup += 1,
                None => t.bad += 1,
            }
            t.last_progress = Instant::now();
            t.tx_waiting.push_back(head);
            work = true;
        }
        // In order, every chain read is completed now, in batches (nothing lies, nothing
        // waits). `room` (which also forgets what the driver surely read) is never 0 here:
        // the entries the driver may not have read end chains it may not have taken back,
        // at most the ring's size of them, and those waiting here are among them.
        while *in_order && !t.tx_waiting.is_empty() && tx.room() > 0 {
            let n = TX_BATCHES[*tx_batch_turn].min(t.tx_waiting.len());
            *tx_batch_turn = (*tx_batch_turn + 1) % TX_BATCHES.len();
            let batch: Vec<u16> = t.tx_waiting.drain(..n).collect();
            tx.push_used_batch(&batch, 0);
            t.tx_completed += n as u64;
            t.tx_batches += 1;
        }
        while t.tx_waiting.len() > lag {
            let Some(&h) = t.tx_waiting.front() else {
                break;
            };
            if !complete_tx(tx, t, *lie, h) {
                break;
            }
            t.tx_waiting.pop_front();
        }
        // Once traffic pauses, what waits is completed honestly.
        if t.last_progress.elapsed() > FLUSH_AFTER {
            while let Some(&h) = t.tx_waiting.front() {
                if !complete_tx(tx, t, Lie::None, h) {
                    break;
                }
                t.tx_waiting.pop_front();
                work = true;
            }
        }
        tx.publish();
        let back = t.ok + t.bad + t.dup + t.lost_to_lies;
        if !t.reported && t.sent == t.n && (back >= t.n || t.last_progress.elapsed() > QUIET) {
            t.reported = true;
            println!(
                "LIAR sent={} ok={} bad={} dup={} lost_to_lies={} lies={} tx_completed={} tx_batches={}",
                t.sent, t.ok, t.bad, t.dup, t.lost_to_lies, t.lies, t.tx_completed, t.tx_batches
            );
        }
        work
    }

    fn ring(&mut self, index: u32) -> Result<&mut RingSetup> {
        self.setup
            .get_mut(index as usize)
            .ok_or(Error::InvalidParam)
    }
}

/// What this backend does not do.
const UNSUPPORTED: Error = Error::InvalidOperation("not supported by vhost_liar");

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> Result<()> {
        Ok(())
    }
    fn reset_owner(&mut self) -> Result<()> {
        Ok(())
    }
    fn reset_device(&mut self) -> Result<()> {
        Err(UNSUPPORTED)
    }
    fn get_features(&mut self) -> Result<u64> {
        Ok(self.offered)
    }
    fn set_features(&mut self, features: u64) -> Result<()> {
        if features & !self.offered != 0 {
            return Err(Error::FeatureMismatch);
        }
        self.packed = features & RING_PACKED != 0;
        self.in_order = features & IN_ORDER != 0;
        Ok(())
    }
    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy_listening: Option<bool>,
    ) -> Result<Option<Vec<VhostUserMemoryRegionBase>>> {
        // Rings point into the old table: the driver sets them up again after this.
        self.live = [None, None];
        let mut regions = Vec::new();
        for (r, f) in ctx.iter().zip(&files) {
            let map = MmapOptions::new()
                .offset(r.mmap_offset)
                .len(r.memory_size as usize)
                .map_raw(f)
                .map_err(Error::ReqHandlerError)?;
            regions.push(Region {
                gpa: r.guest_phys_addr,
                uva: r.user_addr,
                len: r.memory_size,
                map,
            });
        }
        self.mem = Memory(regions);
        Ok(None)
    }
    fn set_vring_num(&mut self, index: u32, num: u32) -> Result<()> {
        self.ring(index)?.num = u16::try_from(num).map_err(|_| Error::InvalidParam)?;
        Ok(())
    }
    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> Result<()> {
        let r = self.ring(index)?;
        (r.desc, r.used, r.avail) = (descriptor, used, available);
        Ok(())
    }
    /// Packed rings: the slot in bits 0-14, the wrap counter in bit 15.
    fn set_vring_base(&mut self, index: u32, base: u32) -> Result<()> {
        self.ring(index)?.base = base as u16;
        Ok(())
    }
    /// Stops the ring: the driver takes back what it holds once this is answered.
    fn get_vring_base(&mut self, index: u32) -> Result<VhostUserVringState> {
        let base = self.ring(index)?.base;
        let used = self.live[index as usize]
            .take()
            .map_or(base, |r| r.used_base());
        if index == 1 {
            self.t.tx_waiting.clear();
        }
        Ok(VhostUserVringState::new(index, used.into()))
    }
    /// Without protocol features a ring starts with its kick.
    fn set_vring_kick(&mut self, index: u8, _fd: Option<File>) -> Result<()> {
        let s = *self.ring(index.into())?;
        let ring = Ring::start(&s, &self.mem, self.packed).ok_or(Error::InvalidParam)?;
        self.live[index as usize] = Some(ring);
        Ok(())
    }
    fn set_vring_call(&mut self, _index: u8, _fd: Option<File>) -> Result<()> {
        Ok(())
    }
    fn set_vring_err(&mut self, _index: u8, _fd: Option<File>) -> Result<()> {
        Ok(())
    }
    fn get_protocol_features(&mut self) -> Result<VhostUserProtocolFeatures> {
        Ok(VhostUserProtocolFeatures::empty())
    }
    fn set_protocol_features(&mut self, _features: u64) -> Result<()> {
        Ok(())
    }
    fn get_queue_num(&mut self) -> Result<u64> {
        Ok(1)
    }
    fn set_vring_enable(&mut self, _index: u32, _enable: bool) -> Result<()> {
        Ok(())
    }
    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> Result<Vec<u8>> {
        Err(UNSUPPORTED)
    }
    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> Result<()> {
        Err(UNSUPPORTED)
    }
    fn set_gpu_socket(&mut self, _: GpuBackend) -> Result<()> {
        Err(UNSUPPORTED)
    }
    fn get_shared_object(&mut self, _: VhostUserSharedMsg) -> Result<File> {
        Err(UNSUPPORTED)
    }
    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> Result<(VhostUserInflight, File)> {
        Err(UNSUPPORTED)
    }
    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> Result<()> {
        Err(UNSUPPORTED)
    }
    fn get_max_mem_slots(&mut self) -> Result<u64> {
        Err(UNSUPPORTED)
    }
    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _: File,
        _: Option<bool>,
    ) -> Result<Option<VhostUserMemoryRegionBase>> {
        Err(UNSUPPORTED)
    }
    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> Result<()> {
        Err(UNSUPPORTED)
    }
    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _: File,
    ) -> Result<Option<File>> {
        Err(UNSUPPORTED)
    }
    fn check_device_state(&mut self) -> Result<()> {
        Err(UNSUPPORTED)
    }
    fn get_shmem_config(&mut self) -> Result<VhostUserShMemConfig> {
        Err(UNSUPPORTED)
    }
    fn set_log_base(&mut self, _: &VhostUserLog, _: File) -> Result<()> {
        Err(UNSUPPORTED)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: vhost_liar SOCKET none|bad-id|dup-id|long-len|used-idx|stop-tx N PPS [packed|packed-in-order|split-in-order]";
    let (Some(path), Some(lie), Some(n), Some(pps)) = (
        args.get(1),
        args.get(2).and_then(|l| Lie::parse(l)),
        args.get(3).and_then(|n| n.parse::<u32>().ok()),
        args.get(4)
            .and_then(|p| p.parse::<u64>().ok())
            .filter(|p| *p > 0),
    ) else {
        fail(usage)
    };
    let rings = match args.get(5).map(String::as_str) {
        None => 0,
        Some("packed") => RING_PACKED,
        Some("packed-in-order") => RING_PACKED | IN_ORDER,
        Some("split-in-order") => IN_ORDER,
        Some(_) => fail(usage),
    };
    if rings != 0 && lie != Lie::None {
        fail("lies are told on split rings used in any order only: use none with the others");
    }
    let offered = VERSION_1 | rings;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap_or_else(|e| fail(format!("bind {path}: {e}")));
    println!("LISTENING");
    let (sock, _) = listener
        .accept()
        .unwrap_or_else(|e| fail(format!("accept on {path}: {e}")));
    let dev = Arc::new(Mutex::new(Device {
        lie,
        offered,
        packed: false,
        in_order: false,
        tx_batch_turn: 0,
        mem: Memory::default(),
        setup: [RingSetup::default(); 2],
        live: [None, None],
        t: Traffic {
            n,
            pps,
            start: None,
            last_progress: Instant::now(),
            sent: 0,
            ok: 0,
            bad: 0,
            dup: 0,
            lost_to_lies: 0,
            lies: 0,
            tx_completed: 0,
            tx_batches: 0,
            tx_waiting: VecDeque::new(),
            seen: HashSet::new(),
            reported: false,
        },
    }));
    let worker = dev.clone();
    std::thread::spawn(move || loop {
        if !lock(&worker).pass() {
            std::thread::sleep(Duration::from_micros(50));
        }
    });
    let mut handler = BackendReqHandler::from_stream(sock, dev);
    loop {
        match handler.handle_request() {
            Ok(()) => {}
            Err(Error::Disconnected | Error::PartialMessage) => break,
            Err(e) => fail(format!("a request from the frontend: {e}")),
        }
    }
    let _ = std::fs::remove_file(path);
}
