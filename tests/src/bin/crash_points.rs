//! The crash-point harness (ARCHITECTURE.md, "Testing the crash model"): each operation
//! that changes shared memory runs in a secondary killed right after its Nth store
//! (`eal::store_point!`), for every N from 1 to the operation's last store; this process,
//! the primary, then does what it does when a peer dies and checks that every object is
//! in exactly one place, that the structure is usable by the next process, and that
//! nothing waited more than a second. It prints one line per operation (kill points
//! explored, failures, losses in ARCHITECTURE.md's known windows) and a total.
//!
//! `crash_points [EAL options] --vdev net_ring0 --vdev net_null0 --vdev
//! net_ixgbe_model0,bar=PATH --vdev net_virtio_user0,path=SOCK,queue_size=64 --vdev
//! net_virtio_user1,path=SOCK2,queue_size=64,packed_vq=1 --vdev
//! net_virtio_user2,path=SOCK3,queue_size=64,packed_vq=1 --vdev
//! net_virtio_user3,path=SOCK4,queue_size=64 -- survivor [OP_PREFIX]`:
//! the primary, exploring the operations whose names start with OP_PREFIX (all without
//! it); it starts the ports (`PORTS`) of the port operations it explores, whose devices
//! (an `ixgbe_model` generating frames, four `vhost_liar`s telling no lies, the second
//! offering packed rings, the third packed rings used in order, the fourth split rings
//! used in order) the caller runs.
//! The hash table operations (`hash.`) each start from a fresh table, built from a plan the
//! primary finds by trial at its start ([`HashPlan`]), and run under lookups from a thread
//! of the primary.
//! `crash_points [EAL options] -- child OP AT`: one run of OP in a
//! secondary on lcore `CHILD_LCORE`, killed after its store number AT from the start of
//! the operation (`count`: never, and it says how many it made); a child that finishes
//! leaves without cleaning up, as if killed after its last store.

use drivers::virtio::virtqueue::{Notifier, VirtQueue, VqShared};
use eal::hash::{Hash, HashError, HashFunction, HashParams, LOOKUP_BULK_MAX};
use eal::mempool::Mempool;
use eal::ring::{Ring, RingFlags};
use eal::Eal;
use net::mbuf::{free_bulk, Mbuf, PktmbufPool};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The lcore every child runs on (the survivor holds lcore 0).
const CHILD_LCORE: usize = 1;
/// The longest anything may wait: a repair, the next use of a structure.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// How long an operation that failed may go on being explored (each failure may wait
/// `MAX_WAIT`): the rest of its kill points are left.
const FAILING_OP_BUDGET: Duration = Duration::from_secs(3);
/// How long a child may take before it counts as hung.
const CHILD_TIMEOUT: Duration = Duration::from_secs(10);

const RING: &str = "cp_ring";
/// What the ring holds before each ring operation, and what a child enqueues.
const RING_START: [usize; 5] = [100, 101, 102, 103, 104];
const PUSHED: [usize; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
/// Ring slots: 16, so 15 values fit and a burst of 12 onto 5 takes 10.
const RING_SIZE: u32 = 16;

/// The pools: one with lcore caches of `CACHE` objects, one without.
const POOL: &str = "cp_pool";
const POOL_NO_CACHE: &str = "cp_pool_nc";
const MBUFS: &str = "cp_mbufs";
const POOL_SIZE: u32 = 64;
const CACHE: u32 = 8;

/// What an operation works on, and so how the survivor repairs and counts it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A plain ring: the dead child was alone on its side, so its claims are given up.
    Ring {
        /// How many of `RING_START` the operation may have taken (its dequeue finished or not).
        taken: [usize; 2],
        /// How many of `PUSHED` it may have added.
        added: [usize; 2],
    },
    /// A mempool: the objects the child held (its `HAND` line) may stay lost with it;
    /// nothing else may be missing, nothing may be free twice.
    Pool { name: &'static str, moves: Moves },
    /// Packet buffers: whatever the child held comes back through its hold ("Holds"),
    /// but for up to `window` of them, lost in one of ARCHITECTURE.md's "Known windows"
    /// (counted apart).
    Mbufs { window: usize },
    /// A port's queues (its family in the operation's name, `PORTS`): after the primary's
    /// repair of the dead poller's queues and its holds, the next process takes the queues
    /// and forwards a burst, and every mbuf of the port's pool is free or held by one of
    /// its queues.
    Port,
    /// The memzone table and the heap, under the robust memory lock: after a death they
    /// are as before the operation or as after it, and take the next reservation.
    /// `allocates`: the operation whose unarmed run says what one more block changes
    /// (itself, or the reservation a free undoes).
    Memory { allocates: &'static str },
    /// The hash table `HASH`, a fresh one filled before each run: readers of this process
    /// look its keys up while the child writes, dies, and this process, the next writer,
    /// repairs; then every key is as before or as after the operation, the count is what
    /// the table lists, and the table fills to its capacity. `makes`: stores the operation
    /// must make (its death lines name them), so that its runs are what it says.
    Hash {
        op: HashOp,
        makes: &'static [&'static str],
    },
}

/// A hash table operation and the state it starts from: keys 0 to n - 1 of [`hash_key`],
/// added in order into an extendable table, n from the [`HashPlan`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HashOp {
    /// Adds key n, which one of its buckets has room for.
    AddRoom,
    /// Adds key n, for which the add moves keys to their other buckets.
    AddCuckoo,
    /// Adds key n, whose buckets are full with no move possible: it goes into a new
    /// extendable bucket, chained to its secondary bucket.
    AddExtend,
    /// Gives key n - 1, in an extendable bucket, new data.
    Update,
    /// Deletes key 0.
    Delete,
    /// Deletes key n - 1, alone in an extendable bucket: the bucket is unlinked.
    DeleteUnlink,
    /// Deletes a key of the main bucket key n - 1's extendable bucket is chained to
    /// ([`HashPlan::compact`]): key n - 1 moves into its place, and its bucket is unlinked.
    DeleteCompact,
    /// Deletes every key (extendable buckets chained).
    Reset,
    /// Deletes a key never added, as the next writer after one killed inside an add that
    /// moves keys, right after its first copy (its key named twice, its slot named
    /// nowhere): the repair, with the table of [`HashOp::AddCuckoo`].
    Repair,
}

/// What a pool operation does to the child's hand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Moves {
    /// Takes this many more objects.
    Get(usize),
    /// Gives back the objects of its `PUT` line.
    Put,
}

struct Op {
    name: &'static str,
    kind: Kind,
}

const fn ring(name: &'static str, taken: usize, added: usize) -> Op {
    Op {
        name,
        kind: Kind::Ring {
            taken: [0, taken],
            added: [0, added],
        },
    }
}

const fn pool(name: &'static str, pool: &'static str, moves: Moves) -> Op {
    Op {
        name,
        kind: Kind::Pool { name: pool, moves },
    }
}

const fn port(name: &'static str) -> Op {
    Op {
        name,
        kind: Kind::Port,
    }
}

const fn memory(name: &'static str, allocates: &'static str) -> Op {
    Op {
        name,
        kind: Kind::Memory { allocates },
    }
}

const fn hash(name: &'static str, op: HashOp, makes: &'static [&'static str]) -> Op {
    Op {
        name,
        kind: Kind::Hash { op, makes },
    }
}

const fn mbufs(name: &'static str, window: usize) -> Op {
    Op {
        name,
        kind: Kind::Mbufs { window },
    }
}

/// Every operation explored, in the order of the table.
const OPS: &[Op] = &[
    ring("ring.sp_enqueue_bulk", 0, 3),
    ring("ring.mp_enqueue_bulk", 0, 3),
    ring("ring.sp_enqueue_burst", 0, 10),
    ring("ring.mp_enqueue_burst", 0, 10),
    ring("ring.sc_dequeue_bulk", 3, 0),
    ring("ring.mc_dequeue_bulk", 3, 0),
    ring("ring.sc_dequeue_burst", 5, 0),
    ring("ring.mc_dequeue_burst", 5, 0),
    ring("ring.sc_dequeue_start_finish", 2, 0),
    pool("mempool.get.cached", POOL, Moves::Get(2)),
    pool("mempool.get.refill", POOL, Moves::Get(4)),
    pool("mempool.get.past_cache", POOL, Moves::Get(10)),
    pool("mempool.put.cached", POOL, Moves::Put),
    pool("mempool.put.flush", POOL, Moves::Put),
    pool("mempool.put.past_cache", POOL, Moves::Put),
    pool("mempool.put.pinned", POOL, Moves::Put),
    pool("mempool.get.no_cache", POOL_NO_CACHE, Moves::Get(4)),
    pool("mempool.put.no_cache", POOL_NO_CACHE, Moves::Put),
    // An allocation larger than the cache goes a cache's worth at a time. Known window: an
    // mbuf with two references (the hold names one holder).
    mbufs("mbuf.alloc", 0),
    mbufs("mbuf.alloc_bulk", 0),
    mbufs("mbuf.alloc_bulk.past_cache", 0),
    mbufs("mbuf.free", 0),
    mbufs("mbuf.free_bulk", 0),
    mbufs("mbuf.free_bulk.flush", 0),
    // A free of more than the cache size goes a cache's worth at a time.
    mbufs("mbuf.free_bulk.past_cache", 0),
    mbufs("mbuf.clone_ref", 1),
    mbufs("mbuf.free.shared", 1),
    // The queues' take-over and release; a burst received, one sent, one forwarded (what
    // l2fwd does), each by a poller that dies.
    port("port.take_release"),
    port("port.rx_burst"),
    port("port.tx_burst"),
    port("port.forward"),
    // `net_null`: a receive allocates, a send frees (counting what it took).
    port("null.rx_burst"),
    port("null.tx_burst"),
    port("null.forward"),
    // `net_ixgbe`: descriptor rings the device writes back, refilled and cleaned in bursts.
    // A TX burst first frees what the device sent: within the lcore cache, and past it.
    port("ixgbe.rx_burst"),
    port("ixgbe.tx_burst"),
    port("ixgbe.tx_burst.past_cache"),
    port("ixgbe.forward"),
    // `net_virtio` (virtio-user): virtqueues, their free lists and used rings. A TX burst
    // first takes back what the device used: within the lcore cache, and past it.
    port("virtio.rx_burst"),
    port("virtio.tx_burst"),
    port("virtio.tx_burst.past_cache"),
    port("virtio.forward"),
    // The same on packed virtqueues.
    port("virtio_packed.rx_burst"),
    port("virtio_packed.tx_burst"),
    port("virtio_packed.tx_burst.past_cache"),
    port("virtio_packed.forward"),
    // The same on packed virtqueues used in order, whose device completes TX chains in
    // batches; and a TX burst that starts with more to take back than one take, which
    // ends inside a batch.
    port("virtio_inorder.rx_burst"),
    port("virtio_inorder.tx_burst"),
    port("virtio_inorder.tx_burst.past_cache"),
    port("virtio_inorder.tx_burst.past_batch"),
    port("virtio_inorder.forward"),
    // The same on split virtqueues used in order.
    port("virtio_split_inorder.rx_burst"),
    port("virtio_split_inorder.tx_burst"),
    port("virtio_split_inorder.tx_burst.past_cache"),
    port("virtio_split_inorder.tx_burst.past_batch"),
    port("virtio_split_inorder.forward"),
    memory("memzone.reserve", "memzone.reserve"),
    memory("memzone.free", "memzone.reserve"),
    memory("heap.malloc", "heap.malloc"),
    memory("heap.free", "heap.malloc"),
    // `eal::hash`: adds (into room, by cuckoo moves, into a new extendable bucket), an
    // update, deletes (plain, emptying an extendable bucket, compacting a chain), a reset
    // and the next writer's repair after a dead one, each under lookups from this process.
    hash("hash.add.room", HashOp::AddRoom, &["hash.entry"]),
    hash("hash.add.cuckoo", HashOp::AddCuckoo, &["hash.cuckoo.copy"]),
    hash(
        "hash.add.extend",
        HashOp::AddExtend,
        &["hash.free_ext", "hash.ext.entry"],
    ),
    hash("hash.update", HashOp::Update, &["hash.update"]),
    hash("hash.delete", HashOp::Delete, &["hash.entry"]),
    hash(
        "hash.delete.unlink",
        HashOp::DeleteUnlink,
        &["hash.chain.unlink", "hash.free_ext"],
    ),
    hash(
        "hash.delete.compact",
        HashOp::DeleteCompact,
        &["hash.chain.copy", "hash.chain.clear", "hash.chain.unlink"],
    ),
    hash("hash.reset", HashOp::Reset, &["hash.reset"]),
    hash(
        "hash.repair",
        HashOp::Repair,
        &[
            "hash.repair.change",
            "hash.repair.entry",
            "hash.repair.count",
        ],
    ),
];

/// A port of the port operations, which name it by their family (`null.rx_burst`: `null`):
/// the port (the survivor's `--vdev`), the pool its RX queue allocates from (the survivor
/// creates it), how many mbufs that pool has, and the descriptors of each queue.
struct TestPort {
    family: &'static str,
    name: &'static str,
    pool: &'static str,
    mbufs: u32,
    descriptors: u32,
    /// Whether its RX queue always has frames to receive (the next process must get some).
    always_receives: bool,
    /// Whether its queues keep mbufs between bursts (descriptor rings): each run then
    /// starts from settled queues ([`settle_queues`]).
    keeps_mbufs: bool,
    /// The rings of a virtio port (virtio-user on `vhost_liar`), which must be those its
    /// queues run on: their accounting is checked, and the frames taken from the device
    /// made up for.
    virtqueues: Option<Rings>,
}

/// A virtio port's rings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rings {
    Split,
    Packed,
    /// Packed, used in order (VIRTIO_F_IN_ORDER).
    PackedInOrder,
    /// Split, used in order (VIRTIO_F_IN_ORDER without packed rings).
    SplitInOrder,
}

/// The ports of the port operations. The `net_ring` port's pool is the mbuf operations'.
const PORTS: &[TestPort] = &[
    TestPort {
        family: "port",
        name: RING_PORT,
        pool: MBUFS,
        mbufs: POOL_SIZE,
        descriptors: 16,
        always_receives: false,
        keeps_mbufs: false,
        virtqueues: None,
    },
    TestPort {
        family: "null",
        name: "net_null0",
        pool: "cp_null_mbufs",
        mbufs: POOL_SIZE,
        descriptors: 16,
        always_receives: true,
        keeps_mbufs: false,
        virtqueues: None,
    },
    // On the 82599 model (`ixgbe_model`), whose generator fills every RX descriptor.
    TestPort {
        family: "ixgbe",
        name: "net_ixgbe_model0",
        pool: "cp_ixgbe_mbufs",
        mbufs: 256,
        descriptors: 64,
        always_receives: true,
        keeps_mbufs: true,
        virtqueues: None,
    },
    // virtio-user on `vhost_liar` in its honest mode, which sends frames at a steady rate.
    TestPort {
        family: "virtio",
        name: "net_virtio_user0",
        pool: "cp_virtio_mbufs",
        mbufs: 1024,
        descriptors: 64,
        always_receives: true,
        keeps_mbufs: true,
        virtqueues: Some(Rings::Split),
    },
    // The same on packed rings (`packed_vq=1`, against a `vhost_liar` that offers them).
    TestPort {
        family: "virtio_packed",
        name: "net_virtio_user1",
        pool: "cp_virtio_packed_mbufs",
        mbufs: 1024,
        descriptors: 64,
        always_receives: true,
        keeps_mbufs: true,
        virtqueues: Some(Rings::Packed),
    },
    // The same used in order (against a `vhost_liar` that offers that too, and completes
    // TX chains in batches).
    TestPort {
        family: "virtio_inorder",
        name: "net_virtio_user2",
        pool: "cp_virtio_inorder_mbufs",
        mbufs: 1024,
        descriptors: 64,
        always_receives: true,
        keeps_mbufs: true,
        virtqueues: Some(Rings::PackedInOrder),
    },
    // Split rings used in order (against a `vhost_liar` that offers IN_ORDER without packed
    // rings, and completes TX chains in batches, one used entry each).
    TestPort {
        family: "virtio_split_inorder",
        name: "net_virtio_user3",
        pool: "cp_virtio_sinorder_mbufs",
        mbufs: 1024,
        descriptors: 64,
        always_receives: true,
        keeps_mbufs: true,
        virtqueues: Some(Rings::SplitInOrder),
    },
];

/// The port operations' port of family `family`.
fn test_port(family: &str) -> Option<&'static TestPort> {
    PORTS.iter().find(|p| p.family == family)
}

/// The `net_ring` port, and the frames its RX ring holds before each of its operations (and
/// the frames a TX burst sends).
const RING_PORT: &str = "net_ring0";
const PORT_FRAMES: usize = 4;

/// The data room of the ports' own pools' mbufs: what an 82599 needs of an RX buffer.
const PORT_DATA_ROOM: u16 = 2048;

/// The memzone the memory operations reserve, and the size of what they take.
const ZONE: &str = "cp_zone";
const BLOCK: u64 = 8192;

/// The hash table operations' table, its keys' length (not a multiple of 8: a key's last
/// word is padded) and its capacity (large enough that an add fails, without extendable
/// buckets, before the table is full: [`HashPlan`]).
const HASH: &str = "cp_hash";
const HASH_KEY_LEN: usize = 13;
const HASH_ENTRIES: u32 = 1024;
/// A key never added: the next writer's first write, a delete of it, takes the table's
/// lock over from the dead writer and repairs.
const HASH_ABSENT: u64 = 1 << 40;
/// The first of the keys that fill the table to its capacity after each run.
const HASH_FILL: u64 = 1 << 32;
/// More stores than any one hash table operation makes.
const HASH_MOST_STORES: u64 = 200;

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("crash_points: {msg}");
    std::process::exit(2);
}

fn join(objs: &[usize]) -> String {
    objs.iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- The child: set up, arm, run one operation.

/// Arms the store count (`at`: the store to die after, `u64::MAX` to only count).
fn arm(at: u64) {
    if !eal::fault::arm_stores(at) {
        fail("this build has no fault points: build with --features rpmd-eal/fault-points");
    }
}

fn child(op: &str, at: u64) {
    let lookup_pool = |name| Mempool::lookup(name).unwrap_or_else(|e| fail(e));
    let hand = |mp: &Mempool, n: usize| {
        let mut objs = vec![0usize; n];
        mp.get_bulk(&mut objs).unwrap_or_else(|e| fail(e));
        say(format!("HAND {}", join(&objs)));
        objs
    };
    match op_family(op) {
        "ring" => {
            let r = Ring::lookup(RING).unwrap_or_else(|e| fail(e));
            let mut out = [0usize; 8];
            arm(at);
            match op {
                "ring.sp_enqueue_bulk" => drop(r.sp_enqueue_bulk(&PUSHED[..3])),
                "ring.mp_enqueue_bulk" => drop(r.mp_enqueue_bulk(&PUSHED[..3])),
                "ring.sp_enqueue_burst" => drop(r.sp_enqueue_burst(&PUSHED)),
                "ring.mp_enqueue_burst" => drop(r.mp_enqueue_burst(&PUSHED)),
                "ring.sc_dequeue_bulk" => drop(r.sc_dequeue_bulk(&mut out[..3])),
                "ring.mc_dequeue_bulk" => drop(r.mc_dequeue_bulk(&mut out[..3])),
                "ring.sc_dequeue_burst" => drop(r.sc_dequeue_burst(&mut out)),
                "ring.mc_dequeue_burst" => drop(r.mc_dequeue_burst(&mut out)),
                "ring.sc_dequeue_start_finish" => {
                    r.sc_dequeue_start(&mut out[..3]);
                    r.sc_dequeue_finish(2);
                }
                _ => fail(format!("unknown operation '{op}'")),
            }
        }
        "mempool" => {
            let name = if op.ends_with("no_cache") {
                POOL_NO_CACHE
            } else {
                POOL
            };
            let mp = lookup_pool(name);
            // The hand first (a get that leaves the cache as the operation wants it), then
            // the operation.
            let (held, get, put) = match op {
                "mempool.get.cached" => (1, 2, 0),
                "mempool.get.refill" | "mempool.get.no_cache" => (0, 4, 0),
                "mempool.get.past_cache" => (0, 10, 0),
                "mempool.put.cached" => (2, 0, 2),
                "mempool.put.flush" | "mempool.put.pinned" | "mempool.put.no_cache" => (4, 0, 4),
                "mempool.put.past_cache" => (13, 0, 13),
                _ => fail(format!("unknown operation '{op}'")),
            };
            let objs = hand(&mp, held);
            let mut got = vec![0usize; get];
            if put > 0 {
                say(format!("PUT {}", join(&objs[..put])));
            }
            arm(at);
            if get > 0 {
                mp.get_bulk(&mut got).unwrap_or_else(|e| fail(e));
            } else if op == "mempool.put.pinned" {
                let cache = mp.local_cache().unwrap_or_else(|| fail("no lcore cache"));
                if !cache.put_pinned(&objs[..put]) {
                    fail("the pinned put did not fit the cache");
                }
                cache.unpin();
            } else {
                mp.put_bulk(&objs[..put]);
            }
        }
        "mbuf" => {
            let p = PktmbufPool::lookup(MBUFS).unwrap_or_else(|e| fail(e));
            let alloc = |n: usize| {
                let mut v = Vec::new();
                if !p.alloc_bulk(&mut v, n) {
                    fail("mbuf pool exhausted");
                }
                v
            };
            match op {
                "mbuf.alloc" => {
                    arm(at);
                    std::mem::forget(p.alloc());
                }
                "mbuf.alloc_bulk" | "mbuf.alloc_bulk.past_cache" => {
                    let n = if op == "mbuf.alloc_bulk" { 4 } else { 10 };
                    let mut v = Vec::with_capacity(n);
                    arm(at);
                    p.alloc_bulk(&mut v, n);
                    std::mem::forget(v);
                }
                "mbuf.free" => {
                    let m = alloc(1);
                    arm(at);
                    drop(m);
                }
                "mbuf.free_bulk" | "mbuf.free_bulk.flush" | "mbuf.free_bulk.past_cache" => {
                    // 4 on a cache of 8 from the refill: a put that fits; 5: a flush; 10:
                    // more than the cache keeps, straight to the ring.
                    let mut v = alloc(match op {
                        "mbuf.free_bulk" => 4,
                        "mbuf.free_bulk.flush" => 5,
                        _ => 10,
                    });
                    arm(at);
                    free_bulk(&mut v);
                }
                "mbuf.clone_ref" => {
                    let m = alloc(1);
                    arm(at);
                    std::mem::forget(m[0].clone_ref());
                }
                "mbuf.free.shared" => {
                    let m: Vec<Mbuf> = alloc(1);
                    let other = m[0].clone_ref();
                    arm(at);
                    drop(other);
                    std::mem::forget(m);
                }
                _ => fail(format!("unknown operation '{op}'")),
            }
        }
        "memzone" | "heap" => {
            let eal = eal::eal().unwrap_or_else(|e| fail(e));
            let flags = eal::MemzoneFlags::empty();
            match op {
                "memzone.reserve" => {
                    arm(at);
                    eal.memzone_reserve(ZONE, BLOCK, 64, flags)
                        .unwrap_or_else(|e| fail(e));
                }
                "memzone.free" => {
                    eal.memzone_reserve(ZONE, BLOCK, 64, flags)
                        .unwrap_or_else(|e| fail(e));
                    arm(at);
                    eal.memzone_free(ZONE).unwrap_or_else(|e| fail(e));
                }
                "heap.malloc" => {
                    arm(at);
                    eal.malloc(BLOCK, 64).unwrap_or_else(|e| fail(e));
                }
                "heap.free" => {
                    let block = eal.malloc(BLOCK, 64).unwrap_or_else(|e| fail(e));
                    say(format!("HAND {}", block.as_ptr() as usize));
                    arm(at);
                    eal.free(block).unwrap_or_else(|e| fail(e));
                }
                _ => fail(format!("unknown operation '{op}'")),
            }
        }
        "hash" => {
            let h = Hash::open(HASH, HASH_KEY_LEN as u32).unwrap_or_else(|e| fail(e));
            // The table holds keys 0 to n - 1 (`Survivor::reset`).
            let n = u64::from(h.count());
            let op = hash_op(op);
            // Found by trial on scratch tables, before any store of the operation.
            let compact = if op == HashOp::DeleteCompact {
                compacting_key(n).unwrap_or_else(|e| fail(e))
            } else {
                0
            };
            let key_op = op_key(op, n, compact);
            arm(at);
            match (op, key_op) {
                (HashOp::Reset, _) => h.reset(),
                (HashOp::Repair, _) => {
                    h.delete(&hash_key(HASH_ABSENT)).unwrap_or_else(|e| fail(e));
                }
                (HashOp::Delete | HashOp::DeleteUnlink | HashOp::DeleteCompact, Some((id, _))) => {
                    h.delete(&hash_key(id)).unwrap_or_else(|e| fail(e));
                }
                // The adds and the update: the key and the data it has after the operation.
                (_, Some((id, data))) => {
                    h.add(&hash_key(id), data).unwrap_or_else(|e| fail(e));
                }
                (_, None) => fail(format!("hash operation {op:?} changes no key")),
            }
        }
        // The next process to use a port after a death (a secondary too: what it finds may
        // crash it, and the survivor reports that).
        "next" => {
            let tp = family_port(op.split_once('.').map_or("", |(_, port)| port));
            let port = net::Port::by_name(tp.name).unwrap_or_else(|e| fail(e));
            let pool = PktmbufPool::lookup(tp.pool).unwrap_or_else(|e| fail(e));
            next_burst(tp, &port, &pool).unwrap_or_else(|e| fail(e));
        }
        family => match test_port(family) {
            Some(tp) => port_child(tp, op, at),
            None => fail(format!("unknown operation '{op}'")),
        },
    }
    say(format!("DONE stores={}", eal::fault::stores_counted()));
}

/// One run of a port operation on `tp`'s queue 0 (a child).
fn port_child(tp: &TestPort, op: &str, at: u64) {
    let port = net::Port::by_name(tp.name).unwrap_or_else(|e| fail(e));
    let rx = || port.rx_queue(0).unwrap_or_else(|e| fail(e));
    let tx = || port.tx_queue(0).unwrap_or_else(|e| fail(e));
    let mut burst: Vec<Mbuf> = Vec::with_capacity(8);
    // What the child holds when it is done stays as it is: no release, no free.
    // `tx_burst.past_cache`, `tx_burst.past_batch`: a TX burst that starts with more to
    // free (`sent_before`).
    let what = op.split('.').nth(1).unwrap_or("");
    match what {
        "take_release" => {
            arm(at);
            drop((rx(), tx()));
        }
        "rx_burst" => {
            let mut q = rx();
            arm(at);
            q.rx_burst(&mut burst, 8);
            std::mem::forget(q);
        }
        "tx_burst" => {
            let mut q = tx();
            let p = PktmbufPool::lookup(tp.pool).unwrap_or_else(|e| fail(e));
            if !p.alloc_bulk(&mut burst, PORT_FRAMES) {
                fail("mbuf pool exhausted");
            }
            arm(at);
            q.tx_burst(&mut burst);
            std::mem::forget(q);
        }
        "forward" => {
            let (mut r, mut t) = (rx(), tx());
            arm(at);
            r.rx_burst(&mut burst, 8);
            t.tx_burst(&mut burst);
            std::mem::forget((r, t));
        }
        _ => fail(format!("unknown operation '{op}'")),
    }
    std::mem::forget(burst);
}

// ---- The survivor.

/// How one run of a child ended.
struct ChildRun {
    /// The store it died after (its fault line's detail), None when it finished.
    died_after: Option<String>,
    stdout: String,
    stderr: String,
}

impl ChildRun {
    /// How many stores the child made, when it finished (its `DONE` line).
    fn stores_made(&self) -> Option<u64> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("DONE stores="))
            .and_then(|n| n.parse().ok())
    }

    /// The objects of the child's line starting with `tag` (none without such a line).
    fn objects(&self, tag: &str) -> BTreeSet<usize> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

struct Survivor {
    eal: &'static Eal,
    exe: String,
    ring: Ring,
    pools: [Mempool; 2],
    mbufs: PktmbufPool,
    /// What one more block changes in the heap's state ([`heap_state`]), by the operation
    /// whose unarmed run measured it.
    block_deltas: std::cell::RefCell<std::collections::HashMap<&'static str, (i64, i64)>>,
    /// The states of the hash table operations (when some are explored).
    hash_plan: Option<HashPlan>,
    /// The lookups the readers made during the runs of the current hash operation, and
    /// those of them made while a dead writer held the table (before the repair).
    hash_lookups: std::cell::Cell<[u64; 2]>,
    /// The store after which an add that moves keys has made its first copy (found by trial
    /// on the first [`HashOp::Repair`] run).
    hash_copy_at: std::cell::Cell<Option<u64>>,
}

/// The heap's free bytes and used blocks, read under the memory lock (taking it over
/// from a dead holder).
fn heap_state(eal: &Eal) -> (i64, i64) {
    eal.config().with_mem(|heap, _| {
        let s = heap.stats();
        (s.free as i64, s.used_blocks as i64)
    })
}

/// What the survivor found after one run: how many objects were lost in a known window
/// (0: none, every object accounted for), or what was wrong.
type Verdict = Result<usize, String>;

impl Survivor {
    fn run_child(&self, op: &str, at: Option<u64>) -> Result<ChildRun, String> {
        let lcores = format!("{CHILD_LCORE}@0");
        let at = at.map_or("count".to_string(), |n| n.to_string());
        let mut child = Command::new(&self.exe)
            .args([
                "--lcores",
                &lcores,
                "--proc-type=secondary",
                "--file-prefix",
            ])
            .arg(self.eal.file_prefix())
            .args(["--", "child", op, &at])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a child: {e}"))?;
        let (mut out, mut err) = (
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut stdout = String::new();
        let _ = out.read_to_string(&mut stdout);
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                _ if start.elapsed() > CHILD_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("the child hung for {CHILD_TIMEOUT:?}"));
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        let stderr = reader.join().unwrap_or_default();
        let died_after = stderr
            .lines()
            .find(|l| l.starts_with("fault point store hit"))
            .map(|l| {
                l.rsplit_once("(after ")
                    .map_or(l, |(_, what)| what.trim_end_matches(')'))
                    .to_string()
            });
        match (&died_after, status.signal(), status.code()) {
            (Some(_), Some(libc::SIGKILL), _) | (None, None, Some(0)) => Ok(ChildRun {
                died_after,
                stdout,
                stderr,
            }),
            _ => Err(format!(
                "the child ended with {status} (stdout: {stdout}; stderr: {stderr})"
            )),
        }
    }

    /// Waits until the dead (or gone) child's lcore is free again: the primary's peer-exit
    /// handling has run (its queues repaired, its held mbufs freed, its caches emptied).
    fn wait_lcore_freed(&self) -> Verdict {
        let slot = &self.eal.config().lcores[CHILD_LCORE];
        let start = Instant::now();
        while slot.owner.load() != 0 {
            if start.elapsed() > MAX_WAIT {
                return Err(format!(
                    "the child's lcore was still held ({}) {MAX_WAIT:?} after it died",
                    slot.owner.load()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(0)
    }

    /// Puts everything back as each operation expects it to start (a port's pool and
    /// queues, but for the `net_ring` port's, stay as the last census left them).
    fn reset(&self, op: &Op) -> Result<(), String> {
        match op.kind {
            Kind::Ring { .. } => {
                drain(&self.ring);
                self.ring.mp_enqueue_bulk(&RING_START);
            }
            Kind::Pool { name, .. } => {
                let mp = self.pools.iter().find(|p| p.name() == name).expect("pool");
                refill_pool(mp);
            }
            Kind::Mbufs { .. } => refill_pool(self.mbufs.mempool()),
            Kind::Port if family_port(op.name).keeps_mbufs => {
                return settle_queues(family_port(op.name), op.name);
            }
            Kind::Port if family_port(op.name).name != RING_PORT => {}
            Kind::Port => {
                for r in port_rings() {
                    drain(&r);
                }
                refill_pool(self.mbufs.mempool());
                let mut frames = Vec::new();
                if !self.mbufs.alloc_bulk(&mut frames, PORT_FRAMES) {
                    fail("mbuf pool exhausted");
                }
                let rx =
                    net::mbuf_ring::MbufRing::lookup(&drivers::ring::ring_name(RING_PORT, "rx", 0))
                        .unwrap_or_else(|e| fail(e));
                rx.enqueue_burst(&mut frames);
            }
            Kind::Memory { .. } => {
                // A zone a child left; a block a child freed or not (refused if free).
                let _ = self.eal.memzone_free(ZONE);
            }
            Kind::Hash { op, .. } => {
                hash_table(true, self.hash_fill(op))?;
                if op == HashOp::Repair {
                    self.kill_writer_in_a_move()?;
                }
            }
        }
        Ok(())
    }

    /// The census of the heap and the memzone table after `op` ran from state `before`:
    /// as before it, or as after it (one block more, or one less for a free).
    fn check_memory(
        &self,
        op: &Op,
        allocates: &'static str,
        before: (i64, i64),
        run: &ChildRun,
    ) -> Verdict {
        // The next process reserves and frees first (finishing what the dead one left).
        self.next_reservation()?;
        let now = heap_state(self.eal);
        let delta = (now.0 - before.0, now.1 - before.1);
        if run.died_after.is_none() && allocates == op.name {
            self.block_deltas.borrow_mut().insert(op.name, delta);
        }
        let block = *self
            .block_deltas
            .borrow()
            .get(allocates)
            .ok_or_else(|| format!("{allocates} was not measured before {}", op.name))?;
        if delta != (0, 0) && delta != block {
            return Err(format!(
                "the heap went from {before:?} (free bytes, used blocks) to {now:?}: neither as before nor one block of {block:?} more"
            ));
        }
        let zone = self.eal.memzone_lookup(ZONE).is_ok();
        if op.name.starts_with("memzone") && zone != (delta == block) {
            return Err(if zone {
                format!("memzone {ZONE} is there, and the heap has no block for it")
            } else {
                format!("the heap has a block more and memzone {ZONE} is not there")
            });
        }
        // A block the child held goes back (the census of the next run starts whole).
        for addr in run.objects("HAND ") {
            if let Some(p) = std::ptr::NonNull::new(addr as *mut u8) {
                let _ = self.eal.free(p);
            }
        }
        // Another reservation and its free find the heap as they left it.
        let mid = heap_state(self.eal);
        self.next_reservation()?;
        if heap_state(self.eal) != mid {
            return Err(format!(
                "a reservation and its free moved the heap from {mid:?} to {:?}",
                heap_state(self.eal)
            ));
        }
        Ok(0)
    }

    /// What the next process does with memory: a memzone and a block, each taken and
    /// freed.
    fn next_reservation(&self) -> Result<(), String> {
        let flags = eal::MemzoneFlags::empty();
        self.eal
            .memzone_reserve("cp_zone_next", BLOCK, 64, flags)
            .and_then(|_| self.eal.memzone_free("cp_zone_next"))
            .and_then(|()| self.eal.malloc(BLOCK, 64))
            .and_then(|p| self.eal.free(p))
            .map_err(|e| format!("the next reservation failed: {e}"))
    }

    /// The dead-peer handling of a plain ring, then its census.
    fn check_ring(&self, taken: [usize; 2], added: [usize; 2]) -> Verdict {
        // The child was alone on its side: what it claimed is given up.
        self.ring.abandon_enqueue_claims();
        self.ring.abandon_dequeue_claims();
        let found = drain(&self.ring);
        let fits = |t: usize, a: usize| {
            let want: Vec<usize> = RING_START[t..]
                .iter()
                .chain(&PUSHED[..a])
                .copied()
                .collect();
            found == want
        };
        if taken.iter().any(|t| added.iter().any(|a| fits(*t, *a))) {
            Ok(0)
        } else {
            Err(format!(
                "the ring holds {found:?}: not {RING_START:?} less {taken:?} first, plus {added:?} of {PUSHED:?}"
            ))
        }
    }

    /// The census of a pool: every object free once, and those missing the child's.
    /// `moves`: what the child did to its hand (packet buffers, None: all come back, but
    /// for up to `window` lost in a known window).
    fn check_pool(
        &self,
        mp: &Mempool,
        moves: Option<Moves>,
        window: usize,
        run: &ChildRun,
    ) -> Verdict {
        let free = pool_census(mp)?;
        let missing: BTreeSet<usize> = mp.objects().filter(|o| !free.contains(o)).collect();
        let hand = run.objects("HAND ");
        let put = run.objects("PUT ");
        let ok = match moves {
            None => missing.len() <= window,
            Some(Moves::Get(n)) => {
                hand.is_subset(&missing) && [hand.len(), hand.len() + n].contains(&missing.len())
            }
            Some(Moves::Put) => missing == hand || missing == &hand - &put,
        };
        if ok {
            Ok(if moves.is_none() { missing.len() } else { 0 })
        } else {
            Err(format!(
                "pool {}: {} objects missing, the child held {} and put {}",
                mp.name(),
                missing.len(),
                hand.len(),
                put.len()
            ))
        }
    }

    /// The census of a port's packet buffers, once the primary has repaired the dead
    /// poller's queues and reclaimed its holds: the next process takes both queues and a
    /// burst goes through them, and then every mbuf of the port's pool is either free in
    /// it or held by one of the port's queues (the `net_ring` port's rings are emptied
    /// into the pool first).
    fn check_port(&self, tp: &TestPort) -> Verdict {
        let port = net::Port::by_name(tp.name).map_err(|e| e.to_string())?;
        let pool = PktmbufPool::lookup(tp.pool).map_err(|e| e.to_string())?;
        let next = format!("next.{}", tp.family);
        self.run_child(&next, None)
            .map_err(|e| format!("the next process failed: {e}"))?;
        self.wait_lcore_freed()?;
        if tp.name == RING_PORT {
            for r in port_rings() {
                let r = net::mbuf_ring::MbufRing::lookup(r.name()).map_err(|e| e.to_string())?;
                let mut frames = Vec::new();
                while r.dequeue_burst(32, |m| frames.push(m)) > 0 {}
                free_bulk(&mut frames);
            }
        }
        if tp.virtqueues.is_some() {
            for dir in ["rx", "tx"] {
                let (descs, chains) = virtqueue(&port, dir)?.unaccounted();
                if descs != 0 || chains != 0 {
                    return Err(format!(
                        "{dir} virtqueue: {descs} descriptors neither free nor in a chain with a buffer, {chains} chains in flight without one"
                    ));
                }
            }
        }
        let queues = [net::Direction::Rx, net::Direction::Tx]
            .iter()
            .map(|d| port.queue_mbufs(*d, 0))
            .sum::<Result<u32, _>>()
            .map_err(|e| e.to_string())? as usize;
        let mp = pool.mempool();
        let free = pool_census(mp)?;
        // The census took the free ones out: back they go for the next run.
        pool_ring(mp).mp_enqueue_bulk(&free.iter().copied().collect::<Vec<_>>());
        let missing = mp.size() as usize - free.len();
        if missing != queues {
            return Err(format!(
                "pool {}: {missing} mbufs are not free, and the port's queues hold {queues}",
                mp.name()
            ));
        }
        Ok(0)
    }

    /// One run of `op` killed after store `at` (None: not killed), and the checks.
    /// Returns the run and how many objects it lost in a known window.
    fn explore(&self, op: &Op, at: Option<u64>) -> Result<(ChildRun, usize), String> {
        self.reset(op)?;
        let before = heap_state(self.eal);
        let readers = match op.kind {
            Kind::Hash { op: hop, .. } => {
                let expect = hash_expectations(hop, self.hash_fill(hop), self.hash_compact());
                Some((Reader::start(hash_open()?, expect.clone()), expect))
            }
            _ => None,
        };
        let run = self.run_child(op.name, at)?;
        let start = Instant::now();
        let verdict = match op.kind {
            Kind::Ring { taken, added } => self.check_ring(taken, added),
            Kind::Pool { name, moves } => {
                let mp = self.pools.iter().find(|p| p.name() == name).expect("pool");
                self.wait_lcore_freed()
                    .and_then(|_| self.check_pool(mp, Some(moves), 0, &run))
            }
            Kind::Mbufs { window } => self
                .wait_lcore_freed()
                .and_then(|_| self.check_pool(self.mbufs.mempool(), None, window, &run)),
            Kind::Port => self
                .wait_lcore_freed()
                .and_then(|_| self.check_port(family_port(op.name))),
            Kind::Memory { allocates } => self
                .wait_lcore_freed()
                .and_then(|_| self.check_memory(op, allocates, before, &run)),
            Kind::Hash { op: hop, .. } => {
                let (reader, expect) = readers.expect("readers of a hash operation");
                self.wait_lcore_freed()
                    .and_then(|_| self.check_hash(hop, reader, &expect, &run))
            }
        };
        let verdict = verdict.and_then(|lost| {
            if start.elapsed() > MAX_WAIT {
                Err(format!("the repair and census took {:?}", start.elapsed()))
            } else {
                Ok(lost)
            }
        });
        match verdict {
            Ok(lost) => Ok((run, lost)),
            Err(e) => {
                if op.kind == Kind::Port && family_port(op.name).keeps_mbufs {
                    restart_port(family_port(op.name));
                }
                Err(format!(
                    "{e}; the child died after {}; its stderr: {}",
                    run.died_after.as_deref().unwrap_or("nothing (it finished)"),
                    run.stderr.trim()
                ))
            }
        }
    }
}

/// Stops and starts `tp`'s port after a failed census, so that the next runs start from
/// whole queues: a stop frees what the queues hold, a start fills the RX ring again.
fn restart_port(tp: &TestPort) {
    let port = net::Port::by_name(tp.name).unwrap_or_else(|e| fail(e));
    port.stop()
        .and_then(|()| port.start())
        .unwrap_or_else(|e| fail(format!("cannot restart {} after a failure: {e}", tp.name)));
}

/// The family of an operation's name (`null.rx_burst`: `null`).
fn op_family(op: &str) -> &str {
    op.split_once('.').map_or(op, |(family, _)| family)
}

/// The port of port operation `op`.
fn family_port(op: &str) -> &'static TestPort {
    test_port(op_family(op)).unwrap_or_else(|| fail(format!("'{op}' names no port")))
}

/// Creates `tp`'s pool (the `net_ring` port's is `mbufs`) and starts the port with one
/// queue of each kind.
fn start_port(tp: &TestPort, mbufs: &PktmbufPool) {
    let pool = if tp.pool == MBUFS {
        *mbufs
    } else {
        PktmbufPool::create(tp.pool, tp.mbufs, CACHE, 128, PORT_DATA_ROOM)
            .unwrap_or_else(|e| fail(e))
    };
    let port = net::Port::by_name(tp.name)
        .unwrap_or_else(|e| fail(format!("{e} (give --vdev {})", tp.name)));
    port.configure(1, 1, net::PortConf::default())
        .and_then(|_| port.rx_queue_setup(0, tp.descriptors, &pool))
        .and_then(|_| port.tx_queue_setup(0, tp.descriptors))
        .and_then(|_| port.start())
        .unwrap_or_else(|e| fail(format!("cannot start {}: {e}", tp.name)));
    if let Some(rings) = tp.virtqueues {
        for dir in ["rx", "tx"] {
            let vq = virtqueue(&port, dir).unwrap_or_else(|e| fail(e));
            let runs_on = match (vq.is_packed(), vq.is_in_order()) {
                (false, false) => Rings::Split,
                (false, true) => Rings::SplitInOrder,
                (true, false) => Rings::Packed,
                (true, true) => Rings::PackedInOrder,
            };
            if runs_on != rings {
                fail(format!(
                    "{}: the {dir} virtqueue is not on {rings:?} rings (does the device offer them?)",
                    tp.name
                ));
            }
        }
    }
}

/// What the next process does with a port after a death: takes both queues and forwards a
/// burst, received within `MAX_WAIT` (from a port that always has frames; a few fresh ones
/// for the others).
fn next_burst(tp: &TestPort, port: &net::Port, pool: &PktmbufPool) -> Result<(), String> {
    let (mut rx, mut tx) =
        queue_pair(port).map_err(|e| format!("the next process cannot take the queues: {e}"))?;
    let mut frames = Vec::new();
    if !tp.always_receives && !pool.alloc_bulk(&mut frames, PORT_FRAMES) {
        return Err(format!("pool {}: no {PORT_FRAMES} mbufs to send", tp.pool));
    }
    let start = Instant::now();
    while tp.always_receives && rx.rx_burst(&mut frames, 8) == 0 {
        if start.elapsed() > MAX_WAIT {
            return Err(format!("the next process received nothing in {MAX_WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = tx.tx_burst(&mut frames);
    free_bulk(&mut frames);
    if sent == 0 {
        return Err("the next process's TX burst sent nothing".into());
    }
    Ok(())
}

/// Queue 0 of each kind of `port`, taken for polling.
fn queue_pair(port: &net::Port) -> net::ethdev::Result<(net::RxQueue, net::TxQueue)> {
    port.rx_queue(0)
        .and_then(|r| port.tx_queue(0).map(|t| (r, t)))
}

/// The shared state of `port`'s virtqueue 0 in direction `dir` (`rx` or `tx`).
fn virtqueue(port: &net::Port, dir: &str) -> Result<&'static VqShared, String> {
    drivers::virtio::virtqueue::lookup(&format!("virtio{}_{dir}0", port.id()))
        .map_err(|e| e.to_string())
}

/// How many used entries wait in `vq` (whose poller is this process, or nobody), as its
/// poller would count them: through a handle of our own, which notifies nobody.
fn used_waiting(vq: &'static VqShared) -> u16 {
    VirtQueue::new(vq, Notifier::EventFd(-1)).used_count(u16::MAX)
}

/// How many of `vhost_liar`'s frames may be away from it when a run starts: it sends while
/// fewer than 64 have not come back on TX, and a run sends at most `PORT_FRAMES` that it
/// did not receive (more than were away would close that window for good).
const LIAR_AWAY: u16 = 8;

/// Sends `vhost_liar` fresh frames for those it sent that a process took and freed, so that
/// at most `LIAR_AWAY` of its frames are away from it (by the virtqueues: the RX chains it
/// completed, the frames given to the TX queue), besides the `kept` frames of its this
/// process holds to send back.
fn make_up_for_lost_frames(
    port: &net::Port,
    tx: &mut net::TxQueue,
    pool: &PktmbufPool,
    kept: usize,
) -> Result<(), String> {
    let rx = virtqueue(port, "rx")?;
    // The RX chains the device completed: taken back, and used and waiting.
    let sent = rx
        .taken()
        .wrapping_sub(rx.in_flight())
        .wrapping_add(used_waiting(rx));
    let away = sent
        .wrapping_sub(virtqueue(port, "tx")?.taken())
        .wrapping_sub(kept as u16);
    if away > LIAR_AWAY && away < u16::MAX / 2 {
        let mut frames = Vec::new();
        if !pool.alloc_bulk(&mut frames, usize::from(away - LIAR_AWAY)) {
            return Err(format!("no {} mbufs to send", away - LIAR_AWAY));
        }
        tx.tx_burst(&mut frames);
        free_bulk(&mut frames);
    }
    Ok(())
}

/// Brings the queues of `tp`'s port to the state every run of operation `op` starts from,
/// so that each run makes the stores of the unarmed one: the RX queue's last burst
/// refilled it (a burst of 8 then finds its frames and refills nothing), and the TX queue
/// has nothing left to free but the [`sent_before`] frames of `op` (frames the device
/// sent) that the device has used and the run's burst takes back.
fn settle_queues(tp: &TestPort, op: &str) -> Result<(), String> {
    let port = net::Port::by_name(tp.name).map_err(|e| e.to_string())?;
    let (mut rx, mut tx) =
        queue_pair(&port).map_err(|e| format!("cannot take the queues to settle them: {e}"))?;
    let posted = || {
        port.queue_mbufs(net::Direction::Rx, 0)
            .map_err(|e| e.to_string())
    };
    let pool = PktmbufPool::lookup(tp.pool).map_err(|e| e.to_string())?;
    // The device's own frames are what goes back to it (`vhost_liar` counts them).
    let sent = sent_before(op);
    let mut keep = Vec::with_capacity(sent);
    let start = Instant::now();
    let mut frames = Vec::new();
    loop {
        if tp.virtqueues.is_some() {
            make_up_for_lost_frames(&port, &mut tx, &pool, keep.len())?;
        }
        let before = posted()?;
        let got = rx.rx_burst(&mut frames, 8);
        let more = frames.len().min(sent - keep.len());
        keep.extend(frames.drain(..more));
        free_bulk(&mut frames);
        if keep.len() == sent && posted()? as usize + got > before as usize {
            break;
        }
        if start.elapsed() > MAX_WAIT {
            return Err(format!("the RX queue was not refilled in {MAX_WAIT:?}"));
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut held = 0;
    wait_for(MAX_WAIT, || {
        held = tx.done_cleanup();
        held == 0
    })
    .map_err(|_| {
        format!("the TX queue still held {held} frames {MAX_WAIT:?} after they were sent")
    })?;
    if sent == 0 {
        return Ok(());
    }
    tx.tx_burst(&mut keep);
    free_bulk(&mut keep);
    let mut used = 0;
    wait_for(MAX_WAIT, || {
        used = sent_and_used(tp, &port).unwrap_or(0);
        used == sent
    })
    .map_err(|_| format!("the device used {used} of the {sent} frames sent in {MAX_WAIT:?}"))
}

/// How many of the chains the TX queue 0 of `tp`'s port holds the device has used, when
/// it has used them all (else 0): what the next TX burst takes back first.
fn sent_and_used(tp: &TestPort, port: &net::Port) -> Result<usize, String> {
    match tp.family {
        _ if tp.virtqueues.is_some() => {
            let vq = virtqueue(port, "tx")?;
            let used = used_waiting(vq);
            Ok(if used == vq.in_flight() {
                used.into()
            } else {
                0
            })
        }
        "ixgbe" => {
            let z = drivers::intel::ring::RingZone::lookup(&format!("ixgbe{}_tx0", port.id()))
                .map_err(|e| e.to_string())?;
            let mut used = 0;
            z.tx_completed(|_, _| used += 1);
            Ok(if used == z.mbufs_held() as usize {
                used
            } else {
                0
            })
        }
        _ => Ok(0),
    }
}

/// How many frames the TX queue of operation `op` (of a port that keeps mbufs) holds, used
/// by the device, when a run starts: a run's burst takes them back first (in the lcore
/// cache's pinned step, or with `past_cache`, more than the cache keeps, held by the
/// poller; with `past_batch`, more than one take, `FREE_BATCH`, takes).
fn sent_before(op: &str) -> usize {
    match op.split_once('.').map_or("", |(_, what)| what) {
        "tx_burst" | "forward" => PORT_FRAMES,
        "tx_burst.past_cache" => 3 * CACHE as usize,
        "tx_burst.past_batch" => net::mbuf::FREE_BATCH + CACHE as usize,
        _ => 0,
    }
}

/// Polls `done` every millisecond until it is true, or `limit` passed (an error).
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Dequeues everything a ring holds.
fn drain(r: &Ring) -> Vec<usize> {
    let mut all = Vec::new();
    let mut buf = [0usize; 32];
    loop {
        let n = r.mc_dequeue_burst(&mut buf);
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&buf[..n]);
    }
}

/// The RX and TX rings of the port operations' port.
fn port_rings() -> [Ring; 2] {
    ["rx", "tx"].map(|dir| {
        Ring::lookup(&drivers::ring::ring_name(RING_PORT, dir, 0)).unwrap_or_else(|e| fail(e))
    })
}

/// The ring of pool `mp`, which holds its free objects.
fn pool_ring(mp: &Mempool) -> Ring {
    Ring::lookup(&format!("MP_{}", mp.name())).unwrap_or_else(|e| fail(e))
}

/// Settles both sides of `mp`'s ring (a move a dead process left is repaired by the next
/// one to take the side) and empties this process's cache, then takes every free object:
/// an error names an object free twice.
fn pool_census(mp: &Mempool) -> Result<BTreeSet<usize>, String> {
    let lcore = eal::lcore::current().unwrap_or(0);
    // Empties this process's cache, taking both sides; a pool without caches takes them
    // by moving nothing.
    mp.flush_cache(lcore);
    mp.put_bulk(&[]);
    mp.get_bulk(&mut [])
        .map_err(|e| format!("pool {}: {e}", mp.name()))?;
    if mp.cached() != 0 {
        return Err(format!(
            "pool {}: {} objects left in caches of gone lcores",
            mp.name(),
            mp.cached()
        ));
    }
    let mut free = BTreeSet::new();
    for o in drain(&pool_ring(mp)) {
        if !mp.contains(o) || !free.insert(o) {
            return Err(format!("pool {}: object {o:#x} is free twice", mp.name()));
        }
    }
    Ok(free)
}

/// Puts every object of `mp` back into its ring (after a census took them all out).
fn refill_pool(mp: &Mempool) {
    let r = pool_ring(mp);
    drain(&r);
    let all: Vec<usize> = mp.objects().collect();
    r.mp_enqueue_bulk(&all);
}

// ---- The hash table operations.

/// The hash table operation named `name` (a child's).
fn hash_op(name: &str) -> HashOp {
    match OPS.iter().find(|o| o.name == name).map(|o| o.kind) {
        Some(Kind::Hash { op, .. }) => op,
        _ => fail(format!("unknown operation '{name}'")),
    }
}

/// Key `id` of the hash table operations: its number, then bytes that differ from key to
/// key too.
fn hash_key(id: u64) -> [u8; HASH_KEY_LEN] {
    let mut k = [0u8; HASH_KEY_LEN];
    k[..8].copy_from_slice(&id.to_le_bytes());
    k[8..]
        .copy_from_slice(&id.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()[..HASH_KEY_LEN - 8]);
    k
}

/// The number of key `k`, if it is one of [`hash_key`]'s.
fn hash_key_id(k: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(k.get(..8)?.try_into().ok()?);
    (hash_key(id) == k).then_some(id)
}

/// The data of key `id`, as added or as updated.
fn hash_data(id: u64, updated: bool) -> u64 {
    id << 1 | u64::from(updated)
}

fn hash_open() -> Result<Hash, String> {
    Hash::open(HASH, HASH_KEY_LEN as u32).map_err(|e| e.to_string())
}

/// A fresh table `HASH` (the last one freed) holding keys 0 to `n` - 1.
fn hash_table(extendable: bool, n: u64) -> Result<Hash, String> {
    hash_table_named(HASH, extendable, n)
}

/// A fresh table `name` (the last one of that name freed) holding keys 0 to `n` - 1.
fn hash_table_named(name: &str, extendable: bool, n: u64) -> Result<Hash, String> {
    if let Ok(old) = Hash::find_existing(name) {
        old.free()
            .map_err(|e| format!("cannot free the last table: {e}"))?;
    }
    let h = Hash::create(&HashParams {
        name,
        entries: HASH_ENTRIES,
        key_len: HASH_KEY_LEN as u32,
        function: HashFunction::Crc32c,
        init_val: 0,
        extendable,
    })
    .map_err(|e| e.to_string())?;
    for id in 0..n {
        h.add(&hash_key(id), hash_data(id, false))
            .map_err(|e| format!("filling the table, key {id}: {e}"))?;
    }
    Ok(h)
}

/// How many keys each hash table operation's table holds before it, found by trial: keys
/// are added in order to a table without extendable buckets until one finds no place, and
/// this process counts each add's stores. An add that moves no key makes the stores of the
/// first add into the empty table; one that moves keys makes more. Until the first add that
/// fails, an extendable table of the same keys is the same table (its extendable buckets
/// are used only when an add would fail), so that the key that failed goes into a new
/// extendable bucket there. The runs' death lines then confirm it (`Kind::Hash::makes`).
#[derive(Clone, Copy, Debug)]
struct HashPlan {
    /// Keys before the last add that moved nothing.
    room: u64,
    /// Keys before the add that moved the most keys (the first of them).
    cuckoo: u64,
    /// Keys before the first add that failed.
    full: u64,
    /// The key [`HashOp::DeleteCompact`] deletes ([`compacting_key`]).
    compact: u64,
}

impl HashPlan {
    fn find() -> Result<HashPlan, String> {
        let h = hash_table(false, 0)?;
        let mut stores = Vec::new();
        loop {
            let id = stores.len() as u64;
            // Counting only: this process never dies at a store.
            arm(u64::MAX);
            match h.add(&hash_key(id), hash_data(id, false)) {
                Ok(_) => stores.push(eal::fault::stores_counted()),
                Err(HashError::Full { .. }) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        h.free().map_err(|e| e.to_string())?;
        let full = stores.len() as u64;
        if full == u64::from(HASH_ENTRIES) {
            return Err(format!(
                "all {HASH_ENTRIES} keys fit without extendable buckets: no add links one"
            ));
        }
        let Some(&plain) = stores.first() else {
            return Err("the empty table took no key".into());
        };
        let most = stores.iter().copied().max().unwrap_or(plain);
        let cuckoo = stores.iter().position(|s| *s == most).unwrap_or(0) as u64;
        let room = stores.iter().rposition(|s| *s == plain).unwrap_or(0) as u64;
        if most <= plain {
            return Err(format!("none of {full} adds moved keys"));
        }
        let compact = compacting_key(full + 1)?;
        Ok(HashPlan {
            room,
            cuckoo,
            full,
            compact,
        })
    }
}

/// Of keys 0 to `n` - 2 in the extendable table of keys 0 to `n` - 1 (key n - 1 alone in an
/// extendable bucket chained to its secondary bucket), the first whose delete compacts that
/// chain: it makes more stores than the delete of key n - 1, which only unlinks. Found by
/// trial on scratch tables, among the keys one of whose buckets (DPDK's layout) is that
/// secondary bucket.
fn compacting_key(n: u64) -> Result<u64, String> {
    const SCRATCH: &str = "cp_hash_trial";
    let mask = HASH_ENTRIES.next_power_of_two() / 8 - 1;
    let buckets = |h: &Hash, id: u64| -> Result<[u32; 2], String> {
        let hash = h.hash(&hash_key(id)).map_err(|e| e.to_string())?;
        let prim = hash & mask;
        Ok([prim, (prim ^ (hash >> 16)) & mask])
    };
    let stores_of_delete = |id: u64| -> Result<u64, String> {
        let h = hash_table_named(SCRATCH, true, n)?;
        // Counting only: this process never dies at a store.
        arm(u64::MAX);
        let deleted = h.delete(&hash_key(id)).map_err(|e| e.to_string())?;
        let stores = eal::fault::stores_counted();
        h.free().map_err(|e| e.to_string())?;
        match deleted {
            Some(_) => Ok(stores),
            None => Err(format!("key {id} was not in the scratch table")),
        }
    };
    let h = hash_table_named(SCRATCH, true, 0)?;
    let chained_to = buckets(&h, n - 1)?[1];
    let mut candidates = Vec::new();
    for id in 0..n - 1 {
        if buckets(&h, id)?.contains(&chained_to) {
            candidates.push(id);
        }
    }
    h.free().map_err(|e| e.to_string())?;
    let unlink = stores_of_delete(n - 1)?;
    for id in candidates {
        if stores_of_delete(id)? > unlink {
            return Ok(id);
        }
    }
    Err(format!(
        "no delete of keys 0 to {} compacts the chain of key {}",
        n - 2,
        n - 1
    ))
}

impl Survivor {
    /// Leaves the table of [`HashOp::AddCuckoo`] as a writer killed right after the first
    /// copy of its cuckoo move leaves it.
    fn kill_writer_in_a_move(&self) -> Result<(), String> {
        if let Some(at) = self.hash_copy_at.get() {
            return self.run_child("hash.add.cuckoo", Some(at)).map(drop);
        }
        for at in 1..=HASH_MOST_STORES {
            let run = self.run_child("hash.add.cuckoo", Some(at))?;
            match run.died_after {
                Some(d) if d.contains("hash.cuckoo.copy") => {
                    self.hash_copy_at.set(Some(at));
                    return Ok(());
                }
                Some(_) => {
                    hash_table(true, self.hash_fill(HashOp::AddCuckoo))?;
                }
                None => break,
            }
        }
        Err("the add that moves keys made no copy".into())
    }

    /// The key [`HashOp::DeleteCompact`] deletes.
    fn hash_compact(&self) -> u64 {
        self.hash_plan.map_or(0, |p| p.compact)
    }

    /// How many keys the table of hash operation `op` holds before it.
    fn hash_fill(&self, op: HashOp) -> u64 {
        let plan = self
            .hash_plan
            .unwrap_or_else(|| fail("no plan for the hash operations"));
        match op {
            HashOp::AddRoom => plan.room,
            HashOp::AddCuckoo | HashOp::Repair => plan.cuckoo,
            HashOp::AddExtend => plan.full,
            // With the key that went into an extendable bucket.
            HashOp::Update
            | HashOp::Delete
            | HashOp::DeleteUnlink
            | HashOp::DeleteCompact
            | HashOp::Reset => plan.full + 1,
        }
    }

    /// After a hash operation's run (killed or not), with `reader` still looking up the
    /// keys: the readers go on while the dead writer holds the table; this process, the
    /// next writer, repairs it; every key is then as before the operation or as after it
    /// (the table's count is what it lists, no key listed twice), the operation's key can
    /// be deleted and added back, and the table takes keys up to its capacity (no key slot
    /// or extendable bucket was lost).
    fn check_hash(
        &self,
        op: HashOp,
        mut reader: Reader,
        expect: &[Expect],
        run: &ChildRun,
    ) -> Verdict {
        let h = hash_open()?;
        let seen = reader.lookups();
        // A whole round after the death: no lookup waits for the dead writer.
        reader.wait_rounds(2)?;
        let while_dead = if run.died_after.is_some() {
            reader.lookups() - seen
        } else {
            0
        };
        match h.delete(&hash_key(HASH_ABSENT)) {
            Ok(None) => {}
            other => {
                return Err(format!(
                    "the next writer's delete of an absent key: {other:?}"
                ))
            }
        }
        reader.wait_rounds(1)?;
        let lookups = reader.stop()?;
        let [all, dead] = self.hash_lookups.get();
        self.hash_lookups.set([all + lookups, dead + while_dead]);

        let (found, bulk) = lookup_all(&h, expect).map_err(|e| format!("after the repair, {e}"))?;
        if found != bulk {
            return Err(format!(
                "after the repair, single lookups found {found:?}, bulk ones {bulk:?}"
            ));
        }
        let mut listed = std::collections::BTreeMap::new();
        for e in h.iter() {
            let id = hash_key_id(&e.key)
                .ok_or_else(|| format!("the table lists a key never added: {:?}", e.key))?;
            if listed.insert(id, e.data).is_some() {
                return Err(format!("the table lists key {id} twice"));
            }
        }
        let present: std::collections::BTreeMap<u64, u64> = expect
            .iter()
            .zip(&found)
            .filter_map(|(e, f)| f.map(|d| (e.id, d)))
            .collect();
        if listed != present {
            return Err(format!(
                "the table lists {} keys, lookups find {}: listed only {:?}, found only {:?}",
                listed.len(),
                present.len(),
                listed
                    .keys()
                    .filter(|k| !present.contains_key(k))
                    .collect::<Vec<_>>(),
                present
                    .keys()
                    .filter(|k| !listed.contains_key(k))
                    .collect::<Vec<_>>()
            ));
        }
        if h.count() as usize != listed.len() {
            return Err(format!(
                "the table counts {} keys and lists {}",
                h.count(),
                listed.len()
            ));
        }
        // The operation's key, deleted and added back (with the data it has after it).
        if let Some((id, back)) = op_key(op, self.hash_fill(op), self.hash_compact()) {
            let key = hash_key(id);
            let was = present.get(&id).copied();
            let deleted = h.delete(&key).map_err(|e| e.to_string())?;
            if deleted != was {
                return Err(format!(
                    "the delete of key {id} found {deleted:?}, a lookup {was:?}"
                ));
            }
            h.add(&key, back)
                .map_err(|e| format!("key {id} cannot be added back: {e}"))?;
            if h.lookup(&key) != Ok(Some(back)) {
                return Err(format!("key {id}, added back, is not found with its data"));
            }
        }
        fill_to_capacity(&h)
    }
}

/// The key a hash operation changes, and the data it has after it (for a delete, the data
/// it had; None for a reset). `compact`: the key [`HashOp::DeleteCompact`] deletes.
fn op_key(op: HashOp, n: u64, compact: u64) -> Option<(u64, u64)> {
    match op {
        HashOp::AddRoom | HashOp::AddCuckoo | HashOp::AddExtend | HashOp::Repair => {
            Some((n, hash_data(n, false)))
        }
        HashOp::Update => Some((n - 1, hash_data(n - 1, true))),
        HashOp::Delete => Some((0, hash_data(0, false))),
        HashOp::DeleteUnlink => Some((n - 1, hash_data(n - 1, false))),
        HashOp::DeleteCompact => Some((compact, hash_data(compact, false))),
        HashOp::Reset => None,
    }
}

/// Adds keys until the (extendable) table holds its capacity: every add must succeed until
/// then, and the next one must find the table full.
fn fill_to_capacity(h: &Hash) -> Verdict {
    let cap = h.capacity();
    let mut id = HASH_FILL;
    while h.count() < cap {
        if id - HASH_FILL > u64::from(cap) {
            return Err(format!(
                "{} adds left the count at {}",
                id - HASH_FILL,
                h.count()
            ));
        }
        h.add(&hash_key(id), hash_data(id, false)).map_err(|e| {
            format!(
                "the table took no more than {} of its {cap} keys: {e}",
                h.count()
            )
        })?;
        id += 1;
    }
    match h.add(&hash_key(id), 0) {
        Err(HashError::Full { .. }) => {}
        other => return Err(format!("an add to the full table: {other:?}")),
    }
    let listed = h.iter().count();
    if listed != cap as usize {
        return Err(format!("the full table lists {listed} keys, not {cap}"));
    }
    Ok(0)
}

/// A key the readers look up, and what a lookup of it may find: its data, or nothing.
struct Expect {
    id: u64,
    key: [u8; HASH_KEY_LEN],
    may: [Option<u64>; 2],
}

/// What the lookups of hash operation `op` on a table of keys 0 to `n` - 1 may find: each
/// key as before the operation or as after it, and a key never added nowhere.
fn hash_expectations(op: HashOp, n: u64, compact: u64) -> std::sync::Arc<Vec<Expect>> {
    let expect = |id: u64, may| Expect {
        id,
        key: hash_key(id),
        may,
    };
    let mut all: Vec<Expect> = (0..n)
        .map(|id| {
            let d = Some(hash_data(id, false));
            expect(id, [d, if op == HashOp::Reset { None } else { d }])
        })
        .collect();
    match op_key(op, n, compact) {
        Some((id, after)) if id == n => all.push(expect(id, [None, Some(after)])),
        Some((id, after)) => {
            all[id as usize].may[1] = match op {
                HashOp::Delete | HashOp::DeleteUnlink | HashOp::DeleteCompact => None,
                _ => Some(after),
            }
        }
        None => {}
    }
    all.push(expect(HASH_ABSENT, [None, None]));
    std::sync::Arc::new(all)
}

/// What lookups of keys found, key by key.
type Found = Vec<Option<u64>>;

/// Looks up every key of `expect`, one at a time and in bulks: each lookup must find what
/// its key may hold. Returns what the single lookups found and what the bulk ones did.
fn lookup_all(h: &Hash, expect: &[Expect]) -> Result<(Found, Found), String> {
    let check = |e: &Expect, got: Option<u64>, how: &str| {
        if e.may.contains(&got) {
            Ok(got)
        } else {
            Err(format!(
                "a {how} lookup of key {} found {got:?}, not one of {:?}",
                e.id, e.may
            ))
        }
    };
    let mut single = Vec::with_capacity(expect.len());
    let mut bulk = Vec::with_capacity(expect.len());
    for chunk in expect.chunks(LOOKUP_BULK_MAX) {
        for e in chunk {
            single.push(check(
                e,
                h.lookup(&e.key).map_err(|e| e.to_string())?,
                "single",
            )?);
        }
        let keys: Vec<&[u8]> = chunk.iter().map(|e| e.key.as_slice()).collect();
        let mut data = [0u64; LOOKUP_BULK_MAX];
        let hits = h.lookup_bulk(&keys, &mut data).map_err(|e| e.to_string())?;
        for (i, e) in chunk.iter().enumerate() {
            bulk.push(check(e, (hits >> i & 1 != 0).then_some(data[i]), "bulk")?);
        }
    }
    Ok((single, bulk))
}

/// A thread of the survivor looking up the keys of a hash operation over and over, while
/// the child writes and dies and the next writer repairs (`lookup_all`, its first failure
/// ending it).
struct Reader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Whole rounds of lookups made, and lookups.
    progress: std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Reader {
    fn start(h: Hash, expect: std::sync::Arc<Vec<Expect>>) -> Reader {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let progress = std::sync::Arc::new([0, 0].map(std::sync::atomic::AtomicU64::new));
        let (s, p) = (stop.clone(), progress.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                lookup_all(&h, &expect)?;
                p[1].fetch_add(2 * expect.len() as u64, Ordering::Relaxed);
                p[0].fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        Reader {
            stop,
            progress,
            thread: Some(thread),
        }
    }

    fn lookups(&self) -> u64 {
        self.progress[1].load(Ordering::Relaxed)
    }

    /// Waits for `n` more whole rounds of lookups; an error if they took over `MAX_WAIT`
    /// (a lookup waited) or the reader failed.
    fn wait_rounds(&mut self, n: u64) -> Result<(), String> {
        let target = self.progress[0].load(Ordering::Relaxed) + n;
        let done = |r: &Reader| {
            r.progress[0].load(Ordering::Relaxed) >= target
                || r.thread.as_ref().is_none_or(|t| t.is_finished())
        };
        if wait_for(MAX_WAIT, || done(self)).is_err() {
            return Err(format!(
                "the reader made no whole round of lookups in {MAX_WAIT:?}: a lookup waited"
            ));
        }
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            self.halt()?;
        }
        Ok(())
    }

    /// Stops the reader: the lookups it made, or what it found wrong.
    fn stop(mut self) -> Result<u64, String> {
        self.halt().map(|()| self.lookups())
    }

    fn halt(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        if wait_for(MAX_WAIT, || t.is_finished()).is_err() {
            // The table cannot be freed under it, nor the next run start.
            fail(format!(
                "a reader's lookup has not returned for {MAX_WAIT:?}: it waits for the writer"
            ));
        }
        t.join()
            .unwrap_or_else(|_| Err("it panicked".into()))
            .map_err(|e| format!("a reader during the run or the repair: {e}"))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn survivor(eal: &'static Eal, only: Option<&str>) -> bool {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| fail(e))
        .display()
        .to_string();
    let ring = Ring::create(RING, RING_SIZE, RingFlags::empty()).unwrap_or_else(|e| fail(e));
    let pools = [
        Mempool::create(POOL, POOL_SIZE, 64, CACHE, |_, _| {}).unwrap_or_else(|e| fail(e)),
        Mempool::create(POOL_NO_CACHE, POOL_SIZE, 64, 0, |_, _| {}).unwrap_or_else(|e| fail(e)),
    ];
    let mbufs = PktmbufPool::create(MBUFS, POOL_SIZE, CACHE, 128, 256).unwrap_or_else(|e| fail(e));
    let selected = |family: &str| {
        OPS.iter().any(|o| {
            o.kind == Kind::Port
                && op_family(o.name) == family
                && only.is_none_or(|p| o.name.starts_with(p))
        })
    };
    for tp in PORTS.iter().filter(|tp| selected(tp.family)) {
        start_port(tp, &mbufs);
    }
    let hash_plan = OPS
        .iter()
        .any(|o| matches!(o.kind, Kind::Hash { .. }) && only.is_none_or(|p| o.name.starts_with(p)))
        .then(|| HashPlan::find().unwrap_or_else(|e| fail(e)));
    let s = Survivor {
        eal,
        exe,
        ring,
        pools,
        mbufs,
        block_deltas: Default::default(),
        hash_plan,
        hash_lookups: Default::default(),
        hash_copy_at: Default::default(),
    };
    let (mut points, mut failures, mut windows) = (0u64, 0u64, 0u64);
    say(format!(
        "{:<42} {:>7} {:>9} {:>9} {:>14}",
        "operation", "stores", "explored", "failures", "known_windows"
    ));
    for op in OPS
        .iter()
        .filter(|o| only.is_none_or(|p| o.name.starts_with(p)))
    {
        // A run that is not killed says how many stores the operation makes.
        let stores = match s.explore(op, None) {
            Ok((run, _)) => run.stores_made().unwrap_or(0),
            Err(e) => {
                say(format!("FAIL {} unarmed: {e}", op.name));
                failures += 1;
                continue;
            }
        };
        let (mut explored, mut failed, mut in_window) = (0u64, 0u64, 0u64);
        // The stores the runs died after: all of the operation's, each run making the same.
        let mut died_after = BTreeSet::new();
        let op_start = Instant::now();
        for at in 1..=stores {
            if failed > 0 && op_start.elapsed() > FAILING_OP_BUDGET {
                failed += 1;
                say(format!(
                    "FAIL {}: stopped after {:?} of failures, at kill point {at}",
                    op.name, FAILING_OP_BUDGET
                ));
                break;
            }
            explored += 1;
            match s.explore(op, Some(at)) {
                Ok((run, lost)) if run.died_after.is_some() => {
                    died_after.extend(run.died_after.clone());
                    if lost > 0 {
                        in_window += 1;
                        say(format!(
                            "KNOWN {} @{at}: {lost} lost in a known window, the child died after {}",
                            op.name,
                            run.died_after.as_deref().unwrap_or_default()
                        ));
                    }
                }
                // A store the ring makes only now and then (a copy of the other side's tail
                // refreshed) can make a run one store shorter than the unarmed one: it
                // finished before store `at`, and every store was a kill point (shifted).
                Ok((run, _)) if run.stores_made().is_some_and(|n| n < at) => break,
                Ok((run, _)) => {
                    failed += 1;
                    say(format!(
                        "FAIL {} @{at}: the child did not die ({:?} stores)",
                        op.name,
                        run.stores_made()
                    ));
                }
                Err(e) => {
                    failed += 1;
                    say(format!("FAIL {} @{at}: {e}", op.name));
                }
            }
        }
        if stores == 0 {
            failed += 1;
            say(format!(
                "FAIL {}: the operation made no marked store",
                op.name
            ));
        }
        if let Kind::Hash { makes, .. } = op.kind {
            let missing: Vec<_> = makes.iter().filter(|m| !died_after.contains(**m)).collect();
            if failed == 0 && !missing.is_empty() {
                failed += 1;
                say(format!(
                    "FAIL {}: it made no store {missing:?} (it made {died_after:?}): its table is not in the state it needs",
                    op.name
                ));
            }
        }
        say(format!(
            "{:<42} {stores:>7} {explored:>9} {failed:>9} {in_window:>14}",
            op.name
        ));
        if let Kind::Hash { op: hop, .. } = op.kind {
            let [lookups, while_dead] = s.hash_lookups.take();
            say(format!(
                "  {} keys before it; readers: {lookups} lookups, {while_dead} while a dead writer held the table",
                s.hash_fill(hop)
            ));
        }
        points += explored;
        failures += failed;
        windows += in_window;
    }
    say(format!(
        "TOTAL kill_points={points} failures={failures} known_windows={windows}"
    ));
    failures == 0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    drivers::register_all();
    let (eal, app) = eal::init_or_exit(&args);
    // The ports layer: its dead-peer handling (queue repair, held mbufs) is part of what
    // is checked.
    net::ethdev::init().unwrap_or_else(|e| fail(e));
    match app.get(1).map(String::as_str) {
        Some("child") => {
            let at = match app.get(3).map(String::as_str) {
                Some("count") => u64::MAX,
                Some(n) => n
                    .parse()
                    .unwrap_or_else(|_| fail(format!("'{n}' is not a store number"))),
                None => fail("child needs OP AT"),
            };
            child(app.get(2).map_or("", String::as_str), at);
            // Gone without cleaning up, as if killed after its last store: the survivor
            // handles and checks it the same way.
            std::process::exit(0);
        }
        Some("survivor") => {
            let ok = survivor(eal, app.get(2).map(String::as_str));
            eal.cleanup();
            std::process::exit(if ok { 0 } else { 1 });
        }
        _ => fail("usage: crash_points [EAL options] -- survivor [OP_PREFIX] | child OP AT"),
    }
}
