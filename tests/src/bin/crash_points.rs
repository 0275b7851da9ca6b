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
//! `crash_points [EAL options] -- child OP AT`: one run of OP in a
//! secondary on lcore `CHILD_LCORE`, killed after its store number AT from the start of
//! the operation (`count`: never, and it says how many it made); a child that finishes
//! leaves without cleaning up, as if killed after its last store.

use drivers::virtio::virtqueue::{Notifier, VirtQueue, VqShared};
use eal::mempool::Mempool;
use eal::ring::{Ring, RingFlags};
use eal::Eal;
use net::mbuf::{free_bulk, Mbuf, PktmbufPool};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
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
        fail("this build has no fault points: build with --features eal/fault-points");
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
    let s = Survivor {
        eal,
        exe,
        ring,
        pools,
        mbufs,
        block_deltas: Default::default(),
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
        say(format!(
            "{:<42} {stores:>7} {explored:>9} {failed:>9} {in_window:>14}",
            op.name
        ));
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
