//! mempool_perf: the figures of DPDK's `mempool_perf_autotest` (22.11), measured the same
//! way on our mempool, printed in the same line form for `scripts/bench mempool`.
//!
//! Each lcore takes `n_keep` objects in bulks of `n_get_bulk` and puts them back in bulks of
//! `n_put_bulk`, over and over, for `--time-s` seconds (DPDK: 5); the rate is objects per
//! second over all lcores. Cases run in DPDK's order: pool without cache, then with cache
//! (DPDK also runs its default-ops pool and a user-owned cache, which we do not have), each on
//! 1, 2 and all lcores. `--seconds N` stops after N seconds in all.
//!
//! `--cached-only` skips the section without cache (DPDK cannot: `scripts/bench` lets its
//! run go on long enough to reach the cached section).
//!
//! `cargo bench -p eal --bench mempool_perf [-- [--time-s S] [--seconds N] [--cached-only]
//! [EAL options]]`

use eal::mempool::{LocalCache, Mempool, CACHE_MAX_SIZE};
use eal::timer::rdtsc;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Objects moved per inner round (DPDK's `N`).
const N: u64 = 65536;
const MAX_KEEP: u32 = 512;
const ELT_SIZE: u32 = 2048;
const BULKS: [usize; 4] = [1, 4, 8, 32];
const KEEPS: [usize; 3] = [32, 128, 512];

#[derive(Clone, Copy)]
struct Case {
    get: usize,
    put: usize,
    keep: usize,
    constant: bool,
}

/// One round of DPDK's `test_loop`: takes `keep` objects in bulks of `get`, returns them in
/// bulks of `put`, N objects in all. Inlined into each caller, so that literal bulk sizes
/// make constant-size copies, as in DPDK's test. Exact chunks, as DPDK's loop passes exactly
/// the bulk size each time (`keep` is a multiple of both): with `chunks_mut`, each chunk's
/// length is min(bulk, what is left), never a constant. False if the pool ran dry.
#[inline(always)]
fn test_loop(
    mp: &Mempool,
    cache: Option<&LocalCache>,
    table: &mut [usize],
    keep: usize,
    get: usize,
    put: usize,
) -> bool {
    for _ in 0..N / keep as u64 {
        for chunk in table[..keep].chunks_exact_mut(get) {
            let got = match cache {
                Some(cache) => cache.get_bulk(chunk),
                None => mp.get_bulk(chunk),
            };
            if got.is_err() {
                return false;
            }
        }
        for chunk in table[..keep].chunks_exact(put) {
            match cache {
                Some(cache) => cache.put_bulk(chunk),
                None => mp.put_bulk(chunk),
            }
        }
    }
    true
}

/// Takes and returns objects for `secs` seconds; objects moved.
fn per_lcore(mp: Mempool, c: Case, secs: u64, hz: u64) -> u64 {
    let mut table = [0usize; MAX_KEEP as usize];
    // As DPDK's test: the lcore's cache found once, then generic get and put through it.
    let cache = mp.local_cache();
    let (cache, t) = (cache.as_ref(), &mut table[..]);
    let start = rdtsc();
    let mut moved = 0;
    while rdtsc() - start < secs * hz {
        // "constant n" cases have the bulk sizes as literals, as DPDK's test does.
        let ok = match (c.constant, c.get) {
            (true, 1) => test_loop(&mp, cache, t, c.keep, 1, 1),
            (true, 4) => test_loop(&mp, cache, t, c.keep, 4, 4),
            (true, 8) => test_loop(&mp, cache, t, c.keep, 8, 8),
            (true, 32) => test_loop(&mp, cache, t, c.keep, 32, 32),
            _ => test_loop(&mp, cache, t, c.keep, black_box(c.get), black_box(c.put)),
        };
        if !ok {
            eprintln!("mempool_perf: the pool ran dry");
            return 0;
        }
        moved += N;
    }
    moved
}

fn main() {
    let mut args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let mut take = |flag: &str, default: u64| -> u64 {
        match args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < args.len() => {
                let v = args[i + 1].parse().unwrap_or(default);
                args.drain(i..i + 2);
                v
            }
            _ => default,
        }
    };
    let time_s = take("--time-s", 5);
    let budget = take("--seconds", u64::MAX);
    let cached_only = match args.iter().position(|a| a == "--cached-only") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    if args.len() == 1 {
        args.extend(["-l", "0-1", "-m", "256", "--log-level", "warning"].map(String::from));
        args.push(format!("--file-prefix=mempool_perf_{}", std::process::id()));
    }
    let (eal, _) = eal::init_or_exit(&args);
    let lcores = eal.lcores().ids().len() as u32;
    let size = lcores * (MAX_KEEP + CACHE_MAX_SIZE) - 1;
    let pool = |name: &str, cache: u32| {
        Mempool::create(name, size, ELT_SIZE, cache, |obj, i| {
            // As DPDK's my_obj_init: the object's number in its first bytes.
            // SAFETY: obj is the start of an ELT_SIZE-byte object that nothing else uses yet.
            unsafe { (obj.as_ptr() as *mut u32).write(i) };
        })
        .unwrap_or_else(|e| {
            eprintln!("mempool_perf: {e}");
            std::process::exit(1)
        })
    };
    let nocache = pool("perf_test_nocache", 0);
    let cache = pool("perf_test_cache", CACHE_MAX_SIZE);
    let hz = eal.tsc_hz();
    let started = Instant::now();

    let sections = [("without cache", nocache), ("with cache", cache)];
    for (title, mp) in sections.into_iter().skip(cached_only as usize) {
        println!("start performance test ({title})");
        for cores in [1, 2.min(lcores), lcores] {
            for get in BULKS {
                for put in BULKS {
                    for keep in KEEPS {
                        for constant in [false, true] {
                            if constant && get != put {
                                continue;
                            }
                            if started.elapsed().as_secs() + time_s > budget {
                                eal.cleanup();
                                return;
                            }
                            let c = Case {
                                get,
                                put,
                                keep,
                                constant,
                            };
                            let go = Arc::new(AtomicU32::new(0));
                            let rate = Arc::new(AtomicU64::new(0));
                            let workers: Vec<_> = eal
                                .lcores()
                                .workers()
                                .take(cores as usize - 1)
                                .map(|l| {
                                    let (go, rate) = (go.clone(), rate.clone());
                                    eal.remote_launch(l, move || {
                                        while go.load(Ordering::Acquire) == 0 {
                                            std::hint::spin_loop();
                                        }
                                        rate.fetch_add(
                                            per_lcore(mp, c, time_s, hz) / time_s,
                                            Ordering::Relaxed,
                                        );
                                        0
                                    })
                                    .unwrap_or_else(|e| panic!("{e}"))
                                })
                                .collect();
                            go.store(1, Ordering::Release);
                            rate.fetch_add(
                                per_lcore(mp, c, time_s, hz) / time_s,
                                Ordering::Relaxed,
                            );
                            for w in workers {
                                w.wait();
                            }
                            let rate = rate.load(Ordering::Relaxed);
                            println!(
                                "mempool_autotest cache={} cores={cores} n_get_bulk={get} n_put_bulk={put} n_keep={keep} constant_n={} rate_persec={rate}",
                                mp.cache_size(),
                                constant as u32
                            );
                        }
                    }
                }
            }
        }
    }
    eal.cleanup();
}
