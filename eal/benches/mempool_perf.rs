//! mempool_perf: the figures of DPDK's `mempool_perf_autotest`, measured the same way on our
//! mempool, printed in the line form of the DPDK release compared with, so that
//! `scripts/bench mempool` can match each of our lines with DPDK's by its text.
//!
//! Each lcore takes `n_keep` objects in bulks and puts them back in bulks, over and over, for
//! `--time-s` seconds; the rate is objects per second, summed over the lcores. Cases run in
//! DPDK's order; `--seconds N` stops before the case that would end after N seconds in all.
//! - `--dpdk=25.11` (default): 1 s per case; `n_keep` 32 to 32768; first bulks of a
//!   pseudorandom size from 1 to `n_max_bulk`, then fixed bulks of 1 to 512 (`constant_n=1`:
//!   the size a literal the compiler sees). For 1, 2 and all lcores in turn: the pool
//!   without cache, then the one with cache. The rate divides each lcore's objects by the
//!   time it ran.
//! - `--dpdk=22.11`: 5 s per case; `n_keep` 32 to 512, bulks of 1 to 32. The pool without
//!   cache on 1, 2 and all lcores, then the one with cache. The rate divides by the 5 s.
//!
//! Left out, as our mempool has neither: DPDK's sections on its default-ops pool (a second
//! backend; 25.11 also leaves them out when that backend is the ring, as on x86) and on a
//! user-owned cache (its lines read like the cached pool's: `cache=512`).
//!
//! `--cached-only` leaves out every section without cache. DPDK cannot, so `scripts/bench`
//! lets its run go on until it reaches its first cached section: after the one section
//! without cache on 1 lcore (25.11), after the two sections on 1, 2 and all lcores (22.11).
//!
//! `cargo bench -p rpmd-eal --bench mempool_perf [-- [--dpdk=22.11|25.11] [--time-s S]
//! [--seconds N] [--cached-only] [EAL options]]` (default EAL options: `-l 0-1 -m 512`)

mod common;

use common::Dpdk;
use eal::mempool::{LocalCache, Mempool, CACHE_MAX_SIZE};
use eal::timer::rdtsc;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const ELT_SIZE: u32 = 2048;
/// Pointers in a cache line: DPDK's CACHE_LINE_BURST.
const LINE_BURST: usize = 8;

/// How a case takes and returns its objects.
#[derive(Clone, Copy)]
enum Bulks {
    /// `get` objects per get, `put` per put; `constant`: the sizes as literals.
    Fixed {
        get: usize,
        put: usize,
        constant: bool,
    },
    /// Each get and put of a pseudorandom size from 1 to `max` (a power of two).
    Random { max: usize },
}

#[derive(Clone, Copy)]
struct Case {
    cores: u32,
    keep: usize,
    bulks: Bulks,
}

/// Cases on one pool, under DPDK's title line.
struct Section {
    title: &'static str,
    cached: bool,
    cases: Vec<Case>,
}

/// The fixed-bulk cases of `get` and `put`: a constant one follows when they are equal.
fn fixed(get: usize, put: usize) -> impl Iterator<Item = Bulks> {
    let constant = [false, true].into_iter().filter(move |&c| !c || get == put);
    constant.map(move |constant| Bulks::Fixed { get, put, constant })
}

/// The same cases on the pool without cache, then on the one with cache.
fn both_pools(titles: [&'static str; 2], cases: Vec<Case>) -> [Section; 2] {
    [false, true].map(|cached| Section {
        title: titles[cached as usize],
        cached,
        cases: cases.clone(),
    })
}

impl Dpdk {
    /// Default seconds per case (DPDK's TIME_S).
    fn time_s(self) -> u64 {
        match self {
            Dpdk::V22_11 => 5,
            Dpdk::V25_11 => 1,
        }
    }

    /// Objects one round moves (DPDK's N, 65536 in 22.11); the clock is read between rounds.
    fn round(self) -> usize {
        128 * self.max_keep()
    }

    /// The most objects a case keeps (DPDK's MAX_KEEP).
    fn max_keep(self) -> usize {
        match self {
            Dpdk::V22_11 => 512,
            Dpdk::V25_11 => 32768,
        }
    }

    /// Pool size per lcore (the pools hold this times the lcores, less one).
    fn objects_per_lcore(self) -> u32 {
        let caches = match self {
            Dpdk::V22_11 => 1,
            Dpdk::V25_11 => 2,
        };
        self.max_keep() as u32 + caches * CACHE_MAX_SIZE
    }

    /// DPDK's sections and cases, in its order, but those on pools we do not have.
    fn sections(self, lcores: u32) -> Vec<Section> {
        let keeps = [32, 128, 512, 2048, 8192, 32768];
        let sizes = [1, 4, LINE_BURST, 32, 64, 128, 256, CACHE_MAX_SIZE as usize];
        match self {
            Dpdk::V22_11 => {
                let mut cases = Vec::new();
                for cores in [1, 2.min(lcores), lcores] {
                    for &get in &sizes[..4] {
                        for &put in &sizes[..4] {
                            for &keep in &keeps[..3] {
                                let fixed = fixed(get, put);
                                cases.extend(fixed.map(|bulks| Case { cores, keep, bulks }));
                            }
                        }
                    }
                }
                // The cores run inside each pool's section.
                both_pools(["without cache", "with cache"], cases).into()
            }
            Dpdk::V25_11 => {
                let mut sections = Vec::new();
                // DPDK stops after 1 or 2 lcores when it has no more.
                for cores in [1, 2, lcores].into_iter().take(lcores.min(3) as usize) {
                    let mut cases = Vec::new();
                    let fitting = |keep| sizes.into_iter().filter(move |&n| n <= keep);
                    for keep in keeps {
                        let maxes = fitting(keep).filter(|&n| n >= LINE_BURST);
                        cases.extend(maxes.map(|max| Case {
                            cores,
                            keep,
                            bulks: Bulks::Random { max },
                        }));
                    }
                    for keep in keeps {
                        for get in fitting(keep) {
                            for put in fitting(keep) {
                                cases.extend(fixed(get, put).map(|bulks| Case {
                                    cores,
                                    keep,
                                    bulks,
                                }));
                            }
                        }
                    }
                    // Each pool's section inside the cores'.
                    let titles = [
                        "using ring_mp_mc, without cache",
                        "using ring_mp_mc, with cache",
                    ];
                    sections.extend(both_pools(titles, cases));
                }
                sections
            }
        }
    }

    /// Objects per second of one lcore that moved `moved` in `cycles` of a case of `time_s`.
    fn rate(self, moved: u64, cycles: u64, hz: u64, time_s: u64) -> u64 {
        match self {
            Dpdk::V22_11 => moved / time_s,
            Dpdk::V25_11 => (moved as f64 * hz as f64 / cycles as f64) as u64,
        }
    }

    fn line(self, cache: u32, c: Case, rate: u64) {
        let (cores, keep) = (c.cores, c.keep);
        match (self, c.bulks) {
            (Dpdk::V22_11, Bulks::Fixed { get, put, constant }) => println!(
                "mempool_autotest cache={cache} cores={cores} n_get_bulk={get} n_put_bulk={put} n_keep={keep} constant_n={} rate_persec={rate}",
                constant as u32
            ),
            (Dpdk::V25_11, Bulks::Fixed { get, put, constant }) => println!(
                "mempool_autotest cache={cache} cores={cores} n_keep={keep:5} n_get_bulk={get:3} n_put_bulk={put:3} constant_n={} rate_persec={rate:10}",
                constant as u32
            ),
            (_, Bulks::Random { max }) => println!(
                "mempool_autotest cache={cache} cores={cores} n_keep={keep:5} n_max_bulk={max:3} rate_persec={rate:10}"
            ),
        }
    }
}

/// A get through the lcore's cache, or from the ring without one. False if the pool ran dry.
#[inline(always)]
fn get(mp: &Mempool, cache: Option<&LocalCache>, objs: &mut [usize]) -> bool {
    match cache {
        Some(cache) => cache.get_bulk(objs),
        None => mp.get_bulk(objs),
    }
    .is_ok()
}

#[inline(always)]
fn put(mp: &Mempool, cache: Option<&LocalCache>, objs: &[usize]) {
    match cache {
        Some(cache) => cache.put_bulk(objs),
        None => mp.put_bulk(objs),
    }
}

/// One round of DPDK's `test_loop`: takes `keep` objects in bulks of `get`, returns them in
/// bulks of `put`, `round` objects in all. Inlined into each caller, so that literal bulk
/// sizes make constant-size copies, as in DPDK's test. Exact chunks, as DPDK's loop passes
/// exactly the bulk size each time (`keep` is a multiple of both): with `chunks_mut`, each
/// chunk's length is min(bulk, what is left), never a constant. False if the pool ran dry.
#[inline(always)]
fn test_loop(
    mp: &Mempool,
    cache: Option<&LocalCache>,
    table: &mut [usize],
    round: usize,
    keep: usize,
    get_n: usize,
    put_n: usize,
) -> bool {
    for _ in 0..round / keep {
        for chunk in table[..keep].chunks_exact_mut(get_n) {
            if !get(mp, cache, chunk) {
                return false;
            }
        }
        for chunk in table[..keep].chunks_exact(put_n) {
            put(mp, cache, chunk);
        }
    }
    true
}

/// One round of DPDK 25.11's `test_loop_random`: as [`test_loop`], each bulk's size from
/// DPDK's generator (meant to keep the branch predictor from learning the sizes), cut to
/// what is left of `keep`.
#[inline(always)]
fn test_loop_random(
    mp: &Mempool,
    cache: Option<&LocalCache>,
    table: &mut [usize],
    round: usize,
    keep: usize,
    max: usize,
) -> bool {
    let mut r = 0u32;
    let mut next = |at: usize| {
        let n = ((r ^ (r >> 2) ^ (r << 3)) as usize & (max - 1)) + 1;
        r = r.wrapping_add(1);
        at..at + n.min(keep - at)
    };
    for _ in 0..round / keep {
        let mut at = 0;
        while at < keep {
            let objs = next(at);
            at = objs.end;
            if !get(mp, cache, &mut table[objs]) {
                return false;
            }
        }
        at = 0;
        while at < keep {
            let objs = next(at);
            at = objs.end;
            put(mp, cache, &table[objs]);
        }
    }
    true
}

/// Takes and returns objects in rounds until `secs` seconds have passed; the objects moved
/// and the cycles that took.
fn per_lcore(mp: Mempool, dpdk: Dpdk, c: Case, secs: u64, hz: u64) -> (u64, u64) {
    // Cache-line aligned, as DPDK's obj_table.
    let mut table = vec![0usize; c.keep + LINE_BURST];
    let skip = table.as_ptr().align_offset(64);
    // As DPDK's test: the lcore's cache found once, then generic get and put through it.
    let cache = mp.local_cache();
    let (cache, t) = (cache.as_ref(), &mut table[skip..skip + c.keep]);
    let (round, keep) = (dpdk.round(), c.keep);
    let start = rdtsc();
    let (mut moved, mut cycles) = (0, 0);
    while cycles < secs * hz {
        let ok = match c.bulks {
            Bulks::Random { max } => test_loop_random(&mp, cache, t, round, keep, max),
            // As DPDK's test: a branch per size, each with its size a literal.
            Bulks::Fixed {
                get,
                constant: true,
                ..
            } => match get {
                1 => test_loop(&mp, cache, t, round, keep, 1, 1),
                4 => test_loop(&mp, cache, t, round, keep, 4, 4),
                8 => test_loop(&mp, cache, t, round, keep, 8, 8),
                32 => test_loop(&mp, cache, t, round, keep, 32, 32),
                64 => test_loop(&mp, cache, t, round, keep, 64, 64),
                128 => test_loop(&mp, cache, t, round, keep, 128, 128),
                256 => test_loop(&mp, cache, t, round, keep, 256, 256),
                // The sections make no other size constant.
                _ => test_loop(&mp, cache, t, round, keep, 512, 512),
            },
            Bulks::Fixed { get, put, .. } => {
                test_loop(&mp, cache, t, round, keep, black_box(get), black_box(put))
            }
        };
        if !ok {
            eprintln!("mempool_perf: the pool ran dry");
            return (0, 0);
        }
        moved += round as u64;
        cycles = rdtsc() - start;
    }
    (moved, cycles)
}

fn main() {
    let (dpdk, mut args) = common::take_release("mempool_perf");
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
    let time_s = take("--time-s", dpdk.time_s());
    if time_s == 0 {
        eprintln!("mempool_perf: --time-s needs at least 1 second per case");
        std::process::exit(2)
    }
    let budget = take("--seconds", u64::MAX);
    let cached_only = match args.iter().position(|a| a == "--cached-only") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    common::default_eal_options(&mut args, "mempool_perf", 512);
    let (eal, _) = eal::init_or_exit(&args);
    let lcores = eal.lcores().ids().len() as u32;
    let size = lcores * dpdk.objects_per_lcore() - 1;
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

    for section in dpdk.sections(lcores) {
        if cached_only && !section.cached {
            continue;
        }
        let mp = if section.cached { cache } else { nocache };
        println!("start performance test ({})", section.title);
        for c in section.cases {
            if started.elapsed().as_secs() + time_s > budget {
                eal.cleanup();
                return;
            }
            // As DPDK's test: a case that lost objects spoils those after it.
            if mp.available() != size {
                eprintln!(
                    "mempool_perf: {} of {size} objects free before a case",
                    mp.available()
                );
                eal.cleanup();
                std::process::exit(1)
            }
            let go = Arc::new(AtomicU32::new(0));
            let rate = Arc::new(AtomicU64::new(0));
            let run = move |rate: &AtomicU64| {
                let (moved, cycles) = per_lcore(mp, dpdk, c, time_s, hz);
                rate.fetch_add(dpdk.rate(moved, cycles, hz, time_s), Ordering::Relaxed);
            };
            let workers: Vec<_> = eal
                .lcores()
                .workers()
                .take(c.cores as usize - 1)
                .map(|l| {
                    let (go, rate) = (go.clone(), rate.clone());
                    eal.remote_launch(l, move || {
                        while go.load(Ordering::Acquire) == 0 {
                            std::hint::spin_loop();
                        }
                        run(&rate);
                        0
                    })
                    .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            go.store(1, Ordering::Release);
            run(&rate);
            for w in workers {
                w.wait();
            }
            dpdk.line(mp.cache_size(), c, rate.load(Ordering::Relaxed));
        }
    }
    eal.cleanup();
}
