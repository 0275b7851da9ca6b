//! ring_perf: the figures of DPDK's `ring_perf_autotest` (22.11, "legacy APIs"), measured
//! the same way on our ring in hugepage memory, printed in the same line form so that
//! `scripts/bench ring` can put them side by side.
//!
//! `cargo bench -p eal --bench ring_perf [-- EAL options]` (default: `-l 0-1`).
//! Single-lcore figures are TSC cycles per enqueue+dequeue call pair; two-core figures are
//! cycles per object (enqueuer + dequeuer); "all worker nodes" counts call pairs in 100 ms.

use eal::ring::{Ring, RingFlags};
use eal::timer::rdtsc;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const RING_SIZE: u32 = 4096;
const MAX_BURST: usize = 32;
const BULK_SIZES: [usize; 2] = [8, 32];

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

fn burst_bulk(r: Ring, mp: bool, bulk: bool, size: usize) -> f64 {
    let iterations = 1u64 << 23;
    let mut burst = [0usize; MAX_BURST];
    let size = black_box(size);
    let start = rdtsc();
    for _ in 0..iterations {
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
    (rdtsc() - start) as f64 / iterations as f64
}

fn empty(r: Ring, mp: bool) -> f64 {
    let iterations = 1u64 << 26;
    let mut burst = [0usize; MAX_BURST];
    let size = black_box(BULK_SIZES[0]);
    let start = rdtsc();
    for _ in 0..iterations {
        if mp {
            r.mc_dequeue_bulk(&mut burst[..size]);
        } else {
            r.sc_dequeue_bulk(&mut burst[..size]);
        }
    }
    (rdtsc() - start) as f64 / iterations as f64
}

/// One side of the two-core test: per-object cycles for SP/SC then MP/MC.
fn pair_side(r: Ring, enqueue: bool, size: usize, ready: &AtomicU32) -> (f64, f64) {
    let iterations = 1u64 << 15;
    let mut burst = [0usize; MAX_BURST];
    ready.fetch_add(1, Ordering::AcqRel);
    while ready.load(Ordering::Acquire) != 2 {
        std::hint::spin_loop();
    }
    let mut run = |mp: bool| {
        let start = rdtsc();
        for _ in 0..iterations {
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
        (rdtsc() - start) as f64 / (iterations * size as u64) as f64
    };
    let spsc = run(false);
    (spsc, run(true))
}

fn main() {
    let mut args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() == 1 {
        args.extend(["-l", "0-1", "-m", "64", "--log-level", "warning"].map(String::from));
        args.push(format!("--file-prefix=ring_perf_{}", std::process::id()));
    }
    let (eal, _) = eal::init_or_exit(&args);
    let r = Ring::create("RING_PERF", RING_SIZE, RingFlags::empty()).unwrap_or_else(|e| {
        eprintln!("ring_perf: {e}");
        std::process::exit(1)
    });
    let line = |what: &str, v: f64| println!("legacy APIs: {what}: {v:.2}");

    println!("\n### Testing single element enq/deq ###");
    line("SP/SC: single", single(r, false));
    line("MP/MC: single", single(r, true));
    for (title, bulk) in [("burst", false), ("bulk", true)] {
        println!("\n### Testing {title} enq/deq ###");
        for mp in [false, true] {
            for s in BULK_SIZES {
                let sync = if mp { "MP/MC" } else { "SP/SC" };
                line(
                    &format!("{sync}: {title} (size: {s})"),
                    burst_bulk(r, mp, bulk, s),
                );
            }
        }
    }
    println!("\n### Testing empty bulk deq ###");
    line("SP/SC: bulk (size: 8)", empty(r, false));
    line("MP/MC: bulk (size: 8)", empty(r, true));

    let Some(worker) = eal.lcores().workers().next() else {
        eprintln!("ring_perf: the two-core tests need a second lcore (-l 0-1)");
        eal.cleanup();
        return;
    };
    println!("\n### Testing using two physical cores ###");
    for s in BULK_SIZES {
        let ready = Arc::new(AtomicU32::new(0));
        let rd = ready.clone();
        let deq = eal
            .remote_launch(worker, move || {
                let (a, b) = pair_side(r, false, s, &rd);
                // Pass both figures back through the return value, in hundredths of a cycle.
                (((a * 100.0) as i32) << 16) | (b * 100.0).min(65535.0) as i32
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let (enq_sp, enq_mp) = pair_side(r, true, s, &ready);
        let packed = deq.wait();
        let (deq_sp, deq_mp) = (
            (packed >> 16) as f64 / 100.0,
            (packed & 0xffff) as f64 / 100.0,
        );
        line(&format!("SP/SC: bulk (size: {s})"), enq_sp + deq_sp);
        line(&format!("MP/MC: bulk (size: {s})"), enq_mp + deq_mp);
    }

    println!("\n### Testing using all worker nodes ###");
    let hz = eal.tsc_hz();
    for s in BULK_SIZES {
        println!("\nBulk enq/dequeue count on size {s}");
        let go = Arc::new(AtomicU32::new(0));
        let load = move |go: Arc<AtomicU32>| {
            let mut burst = [0usize; MAX_BURST];
            while go.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            let (begin, mut count) = (rdtsc(), 0u64);
            while rdtsc() - begin < hz / 10 {
                r.mp_enqueue_bulk(&burst[..s]);
                r.mc_dequeue_bulk(&mut burst[..s]);
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
            "Total count (size: {s}): {}",
            counts.iter().map(|c| c.1).sum::<u64>()
        );
    }
    let _ = r.free();
    eal.cleanup();
}
