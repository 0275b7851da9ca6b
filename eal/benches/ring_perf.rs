//! ring_perf: the figures of DPDK's `ring_perf_autotest` ("legacy APIs"), measured the same
//! way on our ring in hugepage memory, printed in the same line form as the DPDK release
//! compared with, so that `scripts/bench ring` can put them side by side.
//!
//! `cargo bench -p rpmd-eal --bench ring_perf [-- [--dpdk=22.11|25.11] [EAL options]]` (default:
//! `--dpdk=25.11 -l 0-1`). The two releases define the figures differently:
//! - 25.11: sizes 8 to 256; every figure in TSC cycles per object (single-lcore: enqueue and
//!   dequeue of a burst divided by its size; two-core: enqueuer's plus dequeuer's cycles per
//!   object).
//! - 22.11: sizes 8 and 32; single-lcore figures in cycles per enqueue+dequeue call pair,
//!   two-core figures per object.
//!
//! Both count, for "all worker nodes", the MP/MC bulk call pairs each lcore makes in 100 ms.

mod common;

use common::Dpdk;
use eal::ring::{Ring, RingFlags};
use eal::timer::rdtsc;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const RING_SIZE: u32 = 4096;
const MAX_BURST: usize = 256;

impl Dpdk {
    fn sizes(self) -> &'static [usize] {
        match self {
            Dpdk::V22_11 => &[8, 32],
            Dpdk::V25_11 => &[8, 32, 64, 128, 256],
        }
    }

    /// One figure's line. `size` is the burst size (1 for single); `per_call` the cycles per
    /// enqueue+dequeue call pair, or already per object for the two-core figures (`per_object`).
    fn line(self, sync: &str, kind: &str, size: usize, cycles: f64, per_object: bool) {
        match self {
            Dpdk::V22_11 => {
                let what = if kind == "single" {
                    "single".to_string()
                } else {
                    format!("{kind} (size: {size})")
                };
                println!("legacy APIs: {sync}: {what}: {cycles:.2}");
            }
            Dpdk::V25_11 => {
                let what = if kind == "single" {
                    "single".to_string()
                } else {
                    format!("{kind} (n:{size:<3})")
                };
                let per_elem = if per_object {
                    cycles
                } else {
                    cycles / size as f64
                };
                println!("legacy APIs - {sync} - {what} - cycles per elem: {per_elem:.3}");
            }
        }
    }
}

fn single(r: Ring, mp: bool) -> f64 {
    let iterations = 1u64 << 24;
    let mut obj = 0usize;
    let start = rdtsc();
    for _ in 0..iterations {
        if mp {
            r.mp_enqueue_one(black_box(obj));
            obj = r.mc_dequeue_one().unwrap_or(obj);
        } else {
            r.sp_enqueue_one(black_box(obj));
            obj = r.sc_dequeue_one().unwrap_or(obj);
        }
    }
    (rdtsc() - start) as f64 / iterations as f64
}

/// Cycles per enqueue+dequeue call pair of `size` objects on one lcore.
fn burst_bulk(r: Ring, mp: bool, bulk: bool, size: usize) -> f64 {
    let calls = (1u64 << 26) / size as u64;
    let mut burst = [0usize; MAX_BURST];
    let size = black_box(size);
    let start = rdtsc();
    for _ in 0..calls {
        match (mp, bulk) {
            (false, false) => {
                r.sp_enqueue_burst(&burst[..size]);
                r.sc_dequeue_burst(&mut burst[..size]);
            }
            (true, false) => {
                r.mp_enqueue_burst(&burst[..size]);
                r.mc_dequeue_burst(&mut burst[..size]);
            }
            (false, true) => {
                r.sp_enqueue_bulk(&burst[..size]);
                r.sc_dequeue_bulk(&mut burst[..size]);
            }
            (true, true) => {
                r.mp_enqueue_bulk(&burst[..size]);
                r.mc_dequeue_bulk(&mut burst[..size]);
            }
        }
    }
    (rdtsc() - start) as f64 / calls as f64
}

/// Cycles per dequeue call of 8 objects from an empty ring.
fn empty(r: Ring, mp: bool) -> f64 {
    let calls = 1u64 << 26;
    let mut burst = [0usize; MAX_BURST];
    let size = black_box(8);
    let start = rdtsc();
    for _ in 0..calls {
        if mp {
            r.mc_dequeue_bulk(&mut burst[..size]);
        } else {
            r.sc_dequeue_bulk(&mut burst[..size]);
        }
    }
    (rdtsc() - start) as f64 / calls as f64
}

/// One side of the two-core test: its cycles per object, moving 2^22 objects in bulks of
/// `size`, once both sides are ready.
fn pair_side(r: Ring, enqueue: bool, mp: bool, size: usize, ready: &AtomicU32) -> f64 {
    let calls = (1u64 << 22) / size as u64;
    let mut burst = [0usize; MAX_BURST];
    ready.fetch_add(1, Ordering::AcqRel);
    while ready.load(Ordering::Acquire) != 2 {
        std::hint::spin_loop();
    }
    let start = rdtsc();
    for _ in 0..calls {
        loop {
            let done = match (enqueue, mp) {
                (true, false) => r.sp_enqueue_bulk(&burst[..size]),
                (true, true) => r.mp_enqueue_bulk(&burst[..size]),
                (false, false) => r.sc_dequeue_bulk(&mut burst[..size]),
                (false, true) => r.mc_dequeue_bulk(&mut burst[..size]),
            };
            if done != 0 {
                break;
            }
            std::hint::spin_loop();
        }
    }
    (rdtsc() - start) as f64 / (calls * size as u64) as f64
}

/// Enqueuer (this lcore) plus dequeuer (`worker`) cycles per object.
fn two_cores(eal: &'static eal::Eal, worker: u32, r: Ring, mp: bool, size: usize) -> f64 {
    let ready = Arc::new(AtomicU32::new(0));
    let rd = ready.clone();
    let deq = eal
        .remote_launch(worker, move || {
            // The figure comes back through the return value, in thousandths of a cycle.
            (pair_side(r, false, mp, size, &rd) * 1000.0).min(i32::MAX as f64) as i32
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let enq = pair_side(r, true, mp, size, &ready);
    enq + deq.wait() as f64 / 1000.0
}

/// MP/MC bulk call pairs of `size` each lcore makes in 100 ms, all lcores at once.
fn all_lcores(eal: &'static eal::Eal, r: Ring, size: usize) {
    println!("\nBulk enq/dequeue count on size {size}");
    let hz = eal.tsc_hz();
    let go = Arc::new(AtomicU32::new(0));
    let load = move |go: Arc<AtomicU32>| {
        let mut burst = [0usize; MAX_BURST];
        while go.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        let (begin, mut count) = (rdtsc(), 0u64);
        while rdtsc() - begin < hz / 10 {
            r.mp_enqueue_bulk(&burst[..size]);
            r.mc_dequeue_bulk(&mut burst[..size]);
            count += 1;
        }
        count
    };
    let threads: Vec<_> = eal
        .lcores()
        .workers()
        .map(|l| {
            let go = go.clone();
            eal.remote_launch(l, move || load(go) as i32)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    go.store(1, Ordering::Release);
    let mut counts = vec![(eal.main_lcore(), load(go.clone()))];
    counts.extend(threads.into_iter().map(|t| (t.lcore(), t.wait() as u64)));
    counts.sort_unstable();
    for (c, n) in &counts {
        println!("Core [{c}] count = {n}");
    }
    println!(
        "Total count (size: {size}): {}",
        counts.iter().map(|c| c.1).sum::<u64>()
    );
}

fn main() {
    let (dpdk, mut args) = common::take_release("ring_perf");
    common::default_eal_options(&mut args, "ring_perf", 64);
    let (eal, _) = eal::init_or_exit(&args);
    let r = Ring::create("RING_PERF", RING_SIZE, RingFlags::empty()).unwrap_or_else(|e| {
        eprintln!("ring_perf: {e}");
        std::process::exit(1)
    });
    let syncs = [(false, "SP/SC"), (true, "MP/MC")];

    println!("\n### Testing single element enq/deq ###");
    for (mp, sync) in syncs {
        dpdk.line(sync, "single", 1, single(r, mp), false);
    }
    for (kind, bulk) in [("burst", false), ("bulk", true)] {
        println!("\n### Testing {kind} enq/deq ###");
        for (mp, sync) in syncs {
            for &size in dpdk.sizes() {
                dpdk.line(sync, kind, size, burst_bulk(r, mp, bulk, size), false);
            }
        }
    }
    println!("\n### Testing empty bulk deq ###");
    for (mp, sync) in syncs {
        dpdk.line(sync, "bulk", 8, empty(r, mp), false);
    }

    let Some(worker) = eal.lcores().workers().next() else {
        eprintln!("ring_perf: the two-core tests need a second lcore (-l 0-1)");
        eal.cleanup();
        return;
    };
    match dpdk {
        // One section, SP/SC and MP/MC by size.
        Dpdk::V22_11 => {
            println!("\n### Testing using two physical cores ###");
            for &size in dpdk.sizes() {
                for (mp, sync) in syncs {
                    let cycles = two_cores(eal, worker, r, mp, size);
                    dpdk.line(sync, "bulk", size, cycles, true);
                }
            }
        }
        // A section for SP/SC, then one for MP/MC.
        Dpdk::V25_11 => {
            for (mp, sync) in syncs {
                println!("\n### Testing using two physical cores ###");
                for &size in dpdk.sizes() {
                    let cycles = two_cores(eal, worker, r, mp, size);
                    dpdk.line(sync, "bulk", size, cycles, true);
                }
            }
        }
    }

    println!("\n### Testing using all worker nodes ###");
    for &size in dpdk.sizes() {
        all_lcores(eal, r, size);
    }
    let _ = r.free();
    eal.cleanup();
}
