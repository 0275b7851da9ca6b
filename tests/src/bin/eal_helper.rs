//! A small program the system tests start as primaries and secondaries.
//!
//! `eal_helper [--occupy ADDR] [EAL options] -- COMMAND [ARGS]`; it prints one line per
//! fact the test checks (`READY ...`, `VALUE ...`) and, for the commands that hold, keeps
//! running until its standard input closes.

use eal::hash::{Hash, HashFunction, HashParams};
use eal::mempool::Mempool;
use eal::ring::{Ring, RingFlags};
use eal::{Eal, MemzoneFlags, Role};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Accounting memzone of the ring test: counters, then one bit per value.
#[repr(C)]
struct Accounting {
    consumed: AtomicU64,
    duplicates: AtomicU64,
    out_of_range: AtomicU64,
    producers_done: AtomicU64,
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("eal_helper: {msg}");
    std::process::exit(2);
}

/// Waits until standard input closes or says `quit`.
fn hold() {
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if l.trim() == "quit" => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(format!("missing or bad argument {i} ({what})")))
}

fn accounting(eal: &Eal, total: u64, create: bool) -> &'static Accounting {
    let len = std::mem::size_of::<Accounting>() as u64 + total.div_ceil(64) * 8;
    let mz = if create {
        eal.memzone_reserve("acct", len, 64, MemzoneFlags::empty())
    } else {
        eal.memzone_lookup("acct")
    }
    .unwrap_or_else(|e| fail(e));
    // SAFETY: the memzone is at least `len` bytes, zeroed at reservation, 64-aligned, and
    // lives until the group ends; Accounting is atomics only.
    unsafe { &*mz.as_ptr::<Accounting>() }
}

fn bitmap(acct: &'static Accounting) -> *const AtomicU64 {
    // SAFETY: the bitmap follows the counters in the same memzone (see accounting()).
    unsafe { (acct as *const Accounting).add(1) as *const AtomicU64 }
}

/// Values `first..first+count` into ring `name`, from the main lcore and every worker.
fn produce(eal: &'static Eal, name: &str, first: u64, count: u64) {
    let ring = Ring::lookup(name).unwrap_or_else(|e| fail(e));
    let lcores: Vec<u32> = eal.lcores().ids();
    let share = count / lcores.len() as u64;
    let work = move |lo: u64, hi: u64| {
        let mut v = lo;
        let mut burst = [0usize; 32];
        while v < hi {
            let n = ((hi - v) as usize).min(1 + (v as usize % 32));
            for (i, b) in burst[..n].iter_mut().enumerate() {
                *b = (v + i as u64) as usize;
            }
            let done = ring.mp_enqueue_burst(&burst[..n]);
            v += done as u64;
            if done == 0 {
                std::thread::yield_now();
            }
        }
    };
    let mut threads = Vec::new();
    for (k, l) in lcores.iter().enumerate() {
        let lo = first + k as u64 * share;
        let hi = if k + 1 == lcores.len() {
            first + count
        } else {
            lo + share
        };
        if *l == eal.main_lcore() {
            continue;
        }
        threads.push(
            eal.remote_launch(*l, move || {
                work(lo, hi);
                0
            })
            .unwrap_or_else(|e| fail(e)),
        );
    }
    let k = lcores
        .iter()
        .position(|l| *l == eal.main_lcore())
        .unwrap_or(0);
    let lo = first + k as u64 * share;
    let hi = if k + 1 == lcores.len() {
        first + count
    } else {
        lo + share
    };
    work(lo, hi);
    for t in threads {
        t.wait();
    }
    say(format!("PRODUCED {count}"));
}

/// Dequeues from ring `name` until `total` values were consumed by the whole group,
/// marking each value's bit.
fn consume(eal: &'static Eal, name: &str, total: u64) {
    let ring = Ring::lookup(name).unwrap_or_else(|e| fail(e));
    let acct = accounting(eal, total, false);
    let bits = bitmap(acct) as usize;
    let work = move || {
        let bits = bits as *const AtomicU64;
        let mut buf = [0usize; 32];
        let mut mine = 0u64;
        while acct.consumed.load(Ordering::Relaxed) < total {
            let n = ring.mc_dequeue_burst(&mut buf);
            if n == 0 {
                std::thread::yield_now();
                continue;
            }
            for v in &buf[..n] {
                let v = *v as u64;
                if v >= total {
                    acct.out_of_range.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // SAFETY: v < total, and the bitmap has total/64 rounded up words.
                let word = unsafe { &*bits.add((v / 64) as usize) };
                if word.fetch_or(1 << (v % 64), Ordering::Relaxed) & (1 << (v % 64)) != 0 {
                    acct.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            mine += n as u64;
            acct.consumed.fetch_add(n as u64, Ordering::Relaxed);
        }
        mine
    };
    let threads: Vec<_> = eal
        .lcores()
        .workers()
        .map(|l| {
            eal.remote_launch(l, move || work() as i32)
                .unwrap_or_else(|e| fail(e))
        })
        .collect();
    work();
    for t in threads {
        t.wait();
    }
    say("CONSUMED");
}

fn check(eal: &Eal, total: u64) {
    let acct = accounting(eal, total, false);
    let bits = bitmap(acct);
    let missing: u64 = (0..total.div_ceil(64))
        .map(|w| {
            let want = if (w + 1) * 64 <= total {
                u64::MAX
            } else {
                (1u64 << (total % 64)) - 1
            };
            // SAFETY: w is below the bitmap's word count.
            let got = unsafe { (*bits.add(w as usize)).load(Ordering::Relaxed) };
            (want & !got).count_ones() as u64
        })
        .sum();
    say(format!(
        "ACCOUNT consumed={} duplicates={} out_of_range={} missing={missing}",
        acct.consumed.load(Ordering::Relaxed),
        acct.duplicates.load(Ordering::Relaxed),
        acct.out_of_range.load(Ordering::Relaxed),
    ));
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    // --occupy ADDR: map something where the group's memory should go, as a library
    // placed there by address-space randomisation would be.
    // --occupy-if-random ADDR: the same, only while address-space randomisation is on.
    let flag = args.get(1).cloned().unwrap_or_default();
    if flag == "--occupy" || flag == "--occupy-if-random" {
        // SAFETY: personality(0xffffffff) only queries the current persona.
        let random = unsafe { libc::personality(0xffff_ffff) } & libc::ADDR_NO_RANDOMIZE == 0;
        let addr = u64::from_str_radix(args.get(2).map_or("", |s| s.trim_start_matches("0x")), 16)
            .unwrap_or_else(|_| fail("--occupy needs a hex address"));
        if flag == "--occupy" || random {
            // SAFETY: MAP_FIXED_NOREPLACE cannot replace anything; the mapping is leaked on purpose.
            let p = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    1 << 21,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                fail("--occupy: cannot map there");
            }
        }
        args.drain(1..3);
    }
    let (eal, app) = eal::init_or_exit(&args);
    let role = match eal.role() {
        Role::Primary => "primary",
        Role::Secondary => "secondary",
    };
    let (base, len) = eal.memory_range();
    say(format!(
        "READY {role} pid={} base={base:#x} len={len}",
        std::process::id()
    ));
    let cmd = app.get(1).map(String::as_str).unwrap_or("hold");
    match cmd {
        "hold" => hold(),
        "mz-write" => {
            let mz = eal
                .memzone_reserve(&app[2], 64, 64, MemzoneFlags::IOVA_CONTIG)
                .unwrap_or_else(|e| fail(e));
            // SAFETY: the memzone is 64 zeroed bytes, aligned; an AtomicU64 fits.
            unsafe { &*mz.as_ptr::<AtomicU64>() }.store(arg(&app, 3, "value"), Ordering::Release);
            say(format!("ADDR {:#x}", mz.addr()));
            hold();
        }
        "mz-read" => match eal.memzone_lookup(&app[2]) {
            Ok(mz) => {
                // SAFETY: as in mz-write.
                let v = unsafe { &*mz.as_ptr::<AtomicU64>() }.load(Ordering::Acquire);
                say(format!("ADDR {:#x} VALUE {v}", mz.addr()));
            }
            Err(e) => say(format!("NOTFOUND {e}")),
        },
        "mz-list" => {
            let names: Vec<String> = eal
                .memzone_list()
                .iter()
                .map(|m| format!("{}:{}", m.name(), m.len()))
                .collect();
            say(format!("LIST {}", names.join(" ")));
        }
        "mz-free" => match eal.memzone_free(&app[2]) {
            Ok(()) => say("FREED"),
            Err(e) => say(format!("NOTFOUND {e}")),
        },
        "mz-reserve" => {
            let flags = match app.get(4).map(String::as_str) {
                Some("contig") => MemzoneFlags::IOVA_CONTIG,
                _ => MemzoneFlags::empty(),
            };
            match eal.memzone_reserve(&app[2], arg(&app, 3, "len"), 4096, flags) {
                Ok(mz) => say(format!("RESERVED {:#x} iova={:#x}", mz.addr(), mz.iova())),
                Err(e) => say(format!("REFUSED {e}")),
            }
        }
        "malloc" => {
            // Unnamed allocations: take, write, free, and take again (the space comes back).
            let a = eal.malloc(1 << 20, 64).unwrap_or_else(|e| fail(e));
            // SAFETY: a points at 1 MiB of shared memory allocated for us alone.
            unsafe { std::ptr::write_bytes(a.as_ptr(), 0xab, 1 << 20) };
            eal.free(a).unwrap_or_else(|e| fail(e));
            let b = eal.malloc(1 << 20, 64).unwrap_or_else(|e| fail(e));
            // SAFETY: as above; malloc returns zeroed memory.
            let zero = unsafe { *b.as_ptr() } == 0;
            say(format!(
                "MALLOC same={} zeroed={zero} double_free_refused={}",
                a == b,
                {
                    eal.free(b).unwrap_or_else(|e| fail(e));
                    eal.free(b).is_err()
                }
            ));
        }
        "ring-setup" => {
            let total: u64 = arg(&app, 3, "total");
            Ring::create(&app[2], arg(&app, 4, "size"), RingFlags::empty())
                .unwrap_or_else(|e| fail(e));
            accounting(eal, total, true);
            say("SETUP");
            hold();
            check(eal, total);
        }
        "ring-lookup" => match Ring::lookup(&app[2]) {
            Ok(r) => say(format!("FOUND {}", r.name())),
            Err(e) => say(format!("NOTFOUND {e}")),
        },
        "produce" => produce(eal, &app[2], arg(&app, 3, "first"), arg(&app, 4, "count")),
        "consume" => consume(eal, &app[2], arg(&app, 3, "total")),
        "pool-create" => {
            Mempool::create(
                &app[2],
                arg(&app, 3, "n"),
                64,
                arg(&app, 4, "cache"),
                |_, _| {},
            )
            .unwrap_or_else(|e| fail(e));
            say("POOL");
            hold();
        }
        "pool-take" => {
            // Takes N objects on the main lcore and keeps them (and the cache) until killed.
            let mp = Mempool::lookup(&app[2]).unwrap_or_else(|e| fail(e));
            let mut objs = vec![0usize; arg(&app, 3, "n")];
            mp.get_bulk(&mut objs).unwrap_or_else(|e| fail(e));
            mp.put_bulk(&objs[..objs.len() / 2]);
            say(format!("TAKEN in_use={}", mp.in_use()));
            hold();
        }
        "pool-stat" => {
            let mp = Mempool::lookup(&app[2]).unwrap_or_else(|e| fail(e));
            say(format!(
                "POOLSTAT in_use={} available={} cached={}",
                mp.in_use(),
                mp.available(),
                mp.cached()
            ));
        }
        "hpet" => match eal::timer::Hpet::open() {
            Ok(h) => say(format!("HPET {}", eal::timer::Clock::hz(&h))),
            Err(e) => say(format!("NOHPET {e}")),
        },
        hash if hash.starts_with("hash-") => hash_command(hash, &app),
        other => fail(format!("unknown command '{other}'")),
    }
    eal.cleanup();
}

/// Test key number `i` of `len` bytes: its bytes, repeated.
fn hash_key(i: u64, len: u32) -> Vec<u8> {
    i.to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len as usize)
        .collect()
}

/// The data test key `i` is added with.
fn hash_data(i: u64) -> u64 {
    i * 3 + 1
}

/// The hash table commands (issue 28's table across processes):
/// - `hash-create NAME ENTRIES KEY_LEN crc|jhash ext|fixed`: `CREATED` or `REFUSED why`;
/// - `hash-open NAME KEY_LEN`: `OPENED count=C capacity=N` or `REFUSED why`;
/// - `hash-fill NAME FIRST N`: adds keys FIRST.. until N are in or an add fails:
///   `FILLED added=K` and ` refused=why`;
/// - `hash-check NAME FIRST N`: as the next writer (it deletes a key never added first),
///   `CHECK present=P wrong=W absent=A count=C iter=I dups=D` (present with the right
///   data, with other data, absent; the table's count, the keys `iter` sees, and how many
///   it sees twice);
/// - `hash-churn NAME FIRST N`: adds then deletes keys FIRST..FIRST+N, over and over,
///   until killed (`CHURNING` once started); every other pass holds the writers' lock over
///   64 changes at a time (`HashWriter`), the others take it per change;
/// - `hash-read NAME FIRST N SECS`: looks keys FIRST..FIRST+N up, one by one and 32 at a
///   time, for SECS seconds: `READ lookups=L failures=F` (a failure: a key missed, or
///   found with other data);
/// - `hash-badkey NAME LEN`: an add and a lookup with a key of LEN bytes: `REFUSED why`.
fn hash_command(cmd: &str, app: &[String]) {
    let name = app
        .get(2)
        .map(String::as_str)
        .unwrap_or_else(|| fail("missing table name"));
    let table = || Hash::find_existing(name).unwrap_or_else(|e| fail(e));
    match cmd {
        "hash-create" => {
            let p = HashParams {
                name,
                entries: arg(app, 3, "entries"),
                key_len: arg(app, 4, "key length"),
                function: match app.get(5).map(String::as_str) {
                    Some("jhash") => HashFunction::Jhash,
                    _ => HashFunction::Crc32c,
                },
                init_val: 0,
                extendable: app.get(6).map(String::as_str) == Some("ext"),
            };
            match Hash::create(&p) {
                Ok(_) => say("CREATED"),
                Err(e) => say(format!("REFUSED {e}")),
            }
        }
        "hash-open" => match Hash::open(name, arg(app, 3, "key length")) {
            Ok(h) => say(format!(
                "OPENED count={} capacity={}",
                h.count(),
                h.capacity()
            )),
            Err(e) => say(format!("REFUSED {e}")),
        },
        "hash-fill" => {
            let h = table();
            let (first, n): (u64, u64) = (arg(app, 3, "first"), arg(app, 4, "n"));
            let mut added = 0;
            let mut refused = String::new();
            for i in first..first + n {
                match h.add(&hash_key(i, h.key_len()), hash_data(i)) {
                    Ok(_) => added += 1,
                    Err(e) => {
                        refused = format!(" refused={e}");
                        break;
                    }
                }
            }
            say(format!("FILLED added={added}{refused}"));
        }
        "hash-check" => {
            let h = table();
            let (first, n): (u64, u64) = (arg(app, 3, "first"), arg(app, 4, "n"));
            // As the next writer (a delete of a key never added): a writer that died is
            // repaired first, as any add or delete would.
            h.delete(&vec![0xff; h.key_len() as usize])
                .unwrap_or_else(|e| fail(e));
            let (mut present, mut wrong, mut absent) = (0, 0, 0);
            for i in first..first + n {
                match h.lookup(&hash_key(i, h.key_len())) {
                    Ok(Some(d)) if d == hash_data(i) => present += 1,
                    Ok(Some(_)) => wrong += 1,
                    Ok(None) => absent += 1,
                    Err(e) => fail(e),
                }
            }
            let mut keys: Vec<Vec<u8>> = h.iter().map(|e| e.key).collect();
            let iter = keys.len();
            keys.sort_unstable();
            keys.dedup();
            say(format!(
                "CHECK present={present} wrong={wrong} absent={absent} count={} iter={iter} dups={}",
                h.count(),
                iter - keys.len()
            ));
        }
        "hash-churn" => {
            let h = table();
            let (first, n): (u64, u64) = (arg(app, 3, "first"), arg(app, 4, "n"));
            // Keys made beforehand: the loop spends its time inside the writes.
            let keys: Vec<Vec<u8>> = (first..first + n)
                .map(|i| hash_key(i, h.key_len()))
                .collect();
            say("CHURNING");
            for burst in [1, 64].into_iter().cycle() {
                for (chunk, from) in keys.chunks(burst).zip((first..).step_by(burst)) {
                    let w = h.writer();
                    for (i, k) in (from..).zip(chunk) {
                        w.add(k, hash_data(i)).unwrap_or_else(|e| fail(e));
                    }
                }
                for chunk in keys.chunks(burst) {
                    let w = h.writer();
                    for k in chunk {
                        w.delete(k).unwrap_or_else(|e| fail(e));
                    }
                }
            }
        }
        "hash-read" => {
            let h = table();
            let (first, n, secs): (u64, u64, u64) = (
                arg(app, 3, "first"),
                arg(app, 4, "n"),
                arg(app, 5, "seconds"),
            );
            let keys: Vec<Vec<u8>> = (first..first + n)
                .map(|i| hash_key(i, h.key_len()))
                .collect();
            let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            let (mut lookups, mut failures) = (0u64, 0u64);
            let mut data = [0u64; 32];
            while std::time::Instant::now() < end {
                for (i, k) in (first..).zip(&keys) {
                    lookups += 1;
                    if h.lookup(k).ok().flatten() != Some(hash_data(i)) {
                        failures += 1;
                    }
                }
                for (c, chunk) in keys.chunks(32).enumerate() {
                    let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                    let hits = h.lookup_bulk(&refs, &mut data).unwrap_or_else(|e| fail(e));
                    for (j, d) in data[..chunk.len()].iter().enumerate() {
                        let i = first + (c * 32 + j) as u64;
                        lookups += 1;
                        if hits & (1 << j) == 0 || *d != hash_data(i) {
                            failures += 1;
                        }
                    }
                }
            }
            say(format!("READ lookups={lookups} failures={failures}"));
        }
        "hash-badkey" => {
            let h = table();
            let k = hash_key(1, arg(app, 3, "key length"));
            match (h.add(&k, 1), h.lookup(&k)) {
                (Err(a), Err(_)) => say(format!("REFUSED {a}")),
                _ => say("ACCEPTED"),
            }
        }
        other => fail(format!("unknown command '{other}'")),
    }
}
