//! hash_perf: the workloads of DPDK's `hash_perf_autotest` and
//! `hash_readwrite_lf_perf_autotest` on our hash table (`eal::hash`, in hugepage memory),
//! printed in the lines of DPDK's tests so that `scripts/bench hash` can pair each of our
//! figures with DPDK's. DPDK 22.11 and 25.11 define both tests alike: `--dpdk=` is taken and
//! changes nothing.
//!
//! `cargo bench -p rpmd-eal --bench hash_perf [-- [--dpdk=22.11|25.11] [--sections=LIST]
//! [EAL options]]` (default EAL options: `-l 0-1 -m 1024`). `--sections=` runs some of the
//! sections below, named in a comma-separated list: `unlocked`, `locked`, `ext` (the three of
//! `hash_perf_autotest`), `1m` (ours alone) and `lf` (`hash_readwrite_lf_perf_autotest`);
//! the default is all of them, as `scripts/bench hash` runs.
//!
//! hash_perf_autotest: tables of 2^19 entries, rte_jhash with init value 0, keys of 4, 8, 16,
//! 32, 48, 64, 9, 13, 37 and 40 bytes made by counting up, 75% of the entries filled (all of
//! them with extendable buckets). Per key size, TSC cycles per add, per lookup (5 passes over
//! the keys shuffled), per lookup in bursts of 16 and per delete, first with the hash computed
//! by the call, then given to it; without data, then with 8-byte data. Sections: every key in
//! its primary bucket (DPDK's layout: buckets of 8, the primary one `hash & mask`; keys whose
//! bucket the test counts full are skipped), keys anywhere; both without and with locks
//! (DPDK's read/write concurrency flag); then extendable buckets, without locks. Ours:
//! - has one mode, safe for readers and writers in any process of the group. "Without
//!   locks", where DPDK's table is promised a single writer, ours holds its writers' lock
//!   through each pass of adds or deletes (a `HashWriter`); "with locks", each add and
//!   delete takes it, as each of DPDK's takes its lock;
//! - always stores 8-byte data: "without data", it adds data 0 and checks that lookups hit,
//!   where DPDK checks the key's position;
//! - also runs tables of 2^20 entries after a "Table of 1048576 entries" line, with 8-byte
//!   data in each section but the locked ones, as DPDK's test
//!   cannot: its table size is a constant of its build. Those figures are ours alone.
//!
//! DPDK's last figure, lookups in its table of 4-byte keys (`rte_fbk_hash`), has no
//! counterpart here.
//!
//! hash_readwrite_lf_perf_autotest: one table of 4M entries, 4-byte keys (the Fibonacci
//! numbers mod 2^32), rte_hash_crc with init value 0, extendable buckets. The keys are sorted
//! by DPDK's bucket layout into those that fit their primary bucket and those that would
//! shift keys, keys absent, keys on and off the shift path; readers on worker lcores look
//! keys up while the main lcore adds or deletes, and the figure is the readers' cycles per
//! lookup. Each case runs 1, 2 and 4 readers, first one key at a time, then in bulks of 32,
//! and ends at the first that needs more lcores than there are. On 2 lcores (this machine
//! has 2 CPUs) only 1 reader one key at a time runs, on both sides. Needing more:
//! - 2 and 4 readers (3 and 5 lcores), and so every bulk case, which follows the 4-reader one;
//! - "Multi-add-lookup": 2 or 4 writers beside the readers (4 lcores or more);
//! - "Writer perf with integrated RCU" (4 lcores or more): our table has no RCU hook, ours
//!   leaves it out;
//! - the cases with lock-free reading off: DPDK runs them only where the CPU has HTM, which
//!   this machine's lacks; ours has one mode, printed as lock-free.
//!
//! The keys of extended buckets are those our table without extendable buckets refuses, as
//! DPDK's are those its table refuses. Beside their lookups the main lcore deletes the keys
//! that table holds in their secondary buckets, listed bucket by bucket as DPDK's test lists
//! them (`Hash::iterate` from the bucket's first entry). DPDK's single writer takes no lock
//! on its lock-free table; ours holds its writers' lock through each pass.

mod common;

use eal::hash::{Hash, HashFunction, HashParams, HashWriter};
use eal::timer::rdtsc;
use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Ends the bench with a message: DPDK's test fails in the same places.
fn die(what: impl Display) -> ! {
    eprintln!("hash_perf: {what}");
    std::process::exit(1)
}

/// The value of a call that only a broken table fails (the keys have the table's length).
fn ok<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| die(format_args!("{what}: {e}")))
}

/// DPDK's rte_rdtsc_precise: the TSC after a full fence.
fn rdtsc_precise() -> u64 {
    fence(Ordering::SeqCst);
    rdtsc()
}

/// Entries per bucket in DPDK's layout, which both tests pick their keys by.
const BUCKET_SIZE: u32 = 8;

/// DPDK's buckets: a table of `entries` has `entries` rounded up to a power of two over 8 of
/// them; the hash's low bits pick the primary one, those bits xor its top 16 the secondary.
struct Layout {
    mask: u32,
}

impl Layout {
    fn new(entries: u32) -> Layout {
        Layout {
            mask: entries.next_power_of_two() / BUCKET_SIZE - 1,
        }
    }
    fn buckets(&self) -> usize {
        self.mask as usize + 1
    }
    fn primary(&self, sig: u32) -> usize {
        (sig & self.mask) as usize
    }
    fn secondary(&self, sig: u32) -> usize {
        ((sig & self.mask) ^ ((sig >> 16) & self.mask)) as usize
    }
}

/// xorshift64*: the shuffles need no better (DPDK's use rte_rand).
struct Rand(u64);

impl Rand {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % n
    }
}

// ---- hash_perf_autotest ----

const KEY_LENS: [u32; 10] = [4, 8, 16, 32, 48, 64, 9, 13, 37, 40];
const MAX_KEYSIZE: usize = 64;
/// DPDK's MAX_ENTRIES.
const PERF_ENTRIES: u32 = 1 << 19;
/// Ours runs 1M entries too, which DPDK's test cannot.
const ENTRIES_1M: u32 = 1 << 20;
const LOOKUP_PASSES: usize = 5;
const SHUFFLES: usize = 10;
const BURST: usize = 16;

#[derive(Clone, Copy)]
enum Op {
    Add,
    Lookup,
    LookupBulk,
    Delete,
}

/// The keys of one table and their hashes, in the order the timed loops take them.
struct PerfKeys {
    len: usize,
    keys: Vec<[u8; MAX_KEYSIZE]>,
    sigs: Vec<u32>,
}

impl PerfKeys {
    fn key(&self, i: usize) -> &[u8] {
        &self.keys[i][..self.len]
    }
}

/// One table's run: its size, whether keys may leave their primary bucket (`pushes`),
/// extendable buckets, whether each add and delete takes the writers' lock (`locks`).
#[derive(Clone, Copy)]
struct Placement {
    entries: u32,
    pushes: bool,
    ext: bool,
    locks: bool,
}

impl Placement {
    /// 75% of the entries, all of them with extendable buckets.
    fn keys(self) -> usize {
        if self.ext {
            self.entries as usize
        } else {
            self.entries as usize * 3 / 4
        }
    }

    fn params<'a>(self, name: &'a str, len: u32) -> HashParams<'a> {
        HashParams {
            name,
            entries: self.entries,
            key_len: len,
            function: HashFunction::Jhash,
            init_val: 0,
            extendable: self.ext,
        }
    }
}

/// DPDK's key search: keys counted up from zero, the first byte by one each try, a carry into
/// the next bytes; a try the table refuses (or, without pushes, whose primary bucket the
/// count says is full) is followed by a count from the refused key, not from the last one
/// taken. Each key taken is added to `h`.
fn input_keys(h: Hash, len: usize, p: Placement) -> PerfKeys {
    let n = p.keys();
    let layout = Layout::new(p.entries);
    let mut buckets = vec![0u32; layout.buckets()];
    let mut taken: Vec<bool> = Vec::new();
    let mut keys = vec![[0u8; MAX_KEYSIZE]; n];
    let mut sigs = vec![0u32; n];
    let (mut i, mut k, mut success, mut refused) = (0, 0u8, true, 0usize);
    while i < n {
        if i != 0 {
            k = k.wrapping_add(1);
            let from = if success { keys[i - 1] } else { keys[i] };
            let key = &mut keys[i];
            key[0] = k;
            let mut carry = k == 0;
            for (b, f) in key[1..len].iter_mut().zip(&from[1..len]) {
                *b = if carry { f.wrapping_add(1) } else { *f };
                carry = carry && *b == 0;
            }
        }
        success = false;
        let key = &keys[i][..len];
        let sig = ok(h.hash(key), "hash");
        sigs[i] = sig;
        let bucket = layout.primary(sig);
        if !p.pushes && buckets[bucket] == BUCKET_SIZE {
            continue;
        }
        let Ok(pos) = h.add_with_hash(key, sig, 0) else {
            // A table that refuses every try would keep this loop going for ever.
            refused += 1;
            if refused > n {
                die(format_args!(
                    "the table of {len}-byte keys refuses every key"
                ));
            }
            continue;
        };
        refused = 0;
        let pos = pos as usize;
        if pos >= taken.len() {
            taken.resize(pos + 1, false);
        }
        // The same key again (the count wrapped): its slot is taken already.
        if taken[pos] {
            continue;
        }
        taken[pos] = true;
        buckets[bucket] += 1;
        success = true;
        i += 1;
    }
    PerfKeys { len, keys, sigs }
}

/// DPDK's shuffle: each position from the last down swaps with a random one below it.
fn shuffle(keys: &mut PerfKeys, rand: &mut Rand) {
    for i in (1..keys.keys.len()).rev() {
        let j = rand.below(i);
        keys.keys.swap(i, j);
        keys.sigs.swap(i, j);
    }
}

/// Runs `f` under the pass's writer `session`, or else under a writer taken for this call.
#[inline(always)]
fn under<T>(h: Hash, session: Option<&HashWriter>, f: impl FnOnce(&HashWriter) -> T) -> T {
    match session {
        Some(w) => f(w),
        None => f(&h.writer()),
    }
}

/// Cycles per operation `op` over the keys: one pass (add, delete) or `LOOKUP_PASSES`.
/// Without locks, DPDK's table is promised a single writer: ours holds its writers' lock
/// for the pass (a `HashWriter`); with locks, each add and delete takes it, as DPDK's take
/// its lock.
fn timed(h: Hash, keys: &PerfKeys, p: Placement, op: Op, with_hash: bool, with_data: bool) -> u64 {
    let n = keys.keys.len();
    let data = |i: usize| if with_data { keys.sigs[i] as u64 } else { 0 };
    // Lookups check the data stored, or without data only that the key is there.
    let check = |i: usize, found: Option<u64>| match found {
        Some(d) if d == data(i) => {}
        Some(d) => die(format_args!(
            "key number {i}: data {d:#x}, but should be {:#x}",
            data(i)
        )),
        None => die(format_args!("key number {i} was not found")),
    };
    let start = rdtsc();
    let session = (!p.locks && matches!(op, Op::Add | Op::Delete)).then(|| h.writer());
    let session = session.as_ref();
    let ops = match op {
        Op::Add => {
            for i in 0..n {
                let r = under(h, session, |w| {
                    if with_hash {
                        w.add_with_hash(keys.key(i), keys.sigs[i], data(i))
                    } else {
                        w.add(keys.key(i), data(i))
                    }
                });
                ok(r, "add");
            }
            n
        }
        Op::Lookup => {
            for _ in 0..LOOKUP_PASSES {
                for i in 0..n {
                    let r = if with_hash {
                        h.lookup_with_hash(keys.key(i), keys.sigs[i])
                    } else {
                        h.lookup(keys.key(i))
                    };
                    check(i, ok(r, "lookup"));
                }
            }
            n * LOOKUP_PASSES
        }
        Op::LookupBulk => {
            let mut found = [0u64; BURST];
            for _ in 0..LOOKUP_PASSES {
                for j in (0..n - n % BURST).step_by(BURST) {
                    let burst: [&[u8]; BURST] = std::array::from_fn(|k| keys.key(j + k));
                    let r = if with_hash {
                        h.lookup_bulk_with_hash(&burst, &keys.sigs[j..j + BURST], &mut found)
                    } else {
                        h.lookup_bulk(&burst, &mut found)
                    };
                    let hits = ok(r, "bulk lookup");
                    for (k, &d) in found.iter().enumerate() {
                        check(j + k, (hits & (1 << k) != 0).then_some(d));
                    }
                }
            }
            n * LOOKUP_PASSES
        }
        Op::Delete => {
            for i in 0..n {
                let r = under(h, session, |w| {
                    if with_hash {
                        w.delete_with_hash(keys.key(i), keys.sigs[i])
                    } else {
                        w.delete(keys.key(i))
                    }
                });
                if ok(r, "delete").is_none() {
                    die(format_args!("failed to delete key number {i}"));
                }
            }
            n
        }
    };
    (rdtsc() - start) / ops as u64
}

fn create(p: &HashParams) -> Hash {
    ok(Hash::create(p), "creating a table")
}

/// DPDK's run_all_tbl_perf_tests: every key size, without and with data (`datas`), then its
/// table of figures.
fn run_all(p: Placement, datas: &[bool], rand: &mut Rand) {
    const OPS: [Op; 4] = [Op::Add, Op::Lookup, Op::LookupBulk, Op::Delete];
    // [with_data][with_hash][key size][op]
    let mut cycles = [[[[0; OPS.len()]; KEY_LENS.len()]; 2]; 2];
    print!("Measuring performance, please wait");
    let _ = std::io::stdout().flush();
    for &with_data in datas {
        for (li, &len) in KEY_LENS.iter().enumerate() {
            let name = format!("test_hash{len}{}", if with_data { "_data" } else { "" });
            let params = p.params(&name, len);
            let h = create(&params);
            let mut keys = input_keys(h, len as usize, p);
            // Timed from an empty table, as DPDK's test makes a new one here.
            ok(h.free(), "freeing a table");
            let h = create(&params);
            for with_hash in [false, true] {
                for (oi, &op) in OPS.iter().enumerate() {
                    cycles[with_data as usize][with_hash as usize][li][oi] =
                        timed(h, &keys, p, op, with_hash, with_data);
                    if let Op::Add = op {
                        for _ in 0..SHUFFLES {
                            shuffle(&mut keys, rand);
                        }
                    }
                }
                print!(".");
                let _ = std::io::stdout().flush();
                h.reset();
            }
            ok(h.free(), "freeing a table");
        }
    }
    println!("\nResults (in CPU cycles/operation)");
    println!("-----------------------------------");
    for &with_data in datas {
        if with_data {
            println!("\n Operations with 8-byte data");
        } else {
            println!("\n Operations without data");
        }
        for with_hash in [false, true] {
            if with_hash {
                println!("\nWith pre-computed hash values");
            } else {
                println!("\nWithout pre-computed hash values");
            }
            println!(
                "\n{:<18}{:<18}{:<18}{:<18}{:<18}",
                "Keysize", "Add", "Lookup", "Lookup_bulk", "Delete"
            );
            for (li, len) in KEY_LENS.iter().enumerate() {
                print!("{len:<18}");
                for c in cycles[with_data as usize][with_hash as usize][li] {
                    print!("{c:<18}");
                }
                println!();
            }
        }
    }
}

fn placement_title(pushes: bool) -> &'static str {
    if pushes {
        "\nELEMENTS IN PRIMARY OR SECONDARY LOCATION"
    } else {
        "\nALL ELEMENTS IN PRIMARY LOCATION"
    }
}

/// The sections `--sections=` names, in the order they run.
const SECTIONS: [&str; 5] = ["unlocked", "locked", "ext", "1m", "lf"];

fn hash_perf(rand: &mut Rand, run: impl Fn(&str) -> bool) {
    for (section, locks) in [("unlocked", false), ("locked", true)] {
        if !run(section) {
            continue;
        }
        println!(
            "\n{} locks in the code",
            if locks { "With" } else { "Without" }
        );
        for pushes in [false, true] {
            println!("{}", placement_title(pushes));
            let p = Placement {
                entries: PERF_ENTRIES,
                pushes,
                ext: false,
                locks,
            };
            run_all(p, &[false, true], rand);
        }
    }
    let ext = Placement {
        entries: PERF_ENTRIES,
        pushes: true,
        ext: true,
        locks: false,
    };
    if run("ext") {
        println!("\n EXTENDABLE BUCKETS PERFORMANCE");
        run_all(ext, &[false, true], rand);
    }
    if !run("1m") {
        return;
    }
    println!("\nTable of {ENTRIES_1M} entries, not in DPDK's test");
    for pushes in [false, true] {
        println!("{}", placement_title(pushes));
        let p = Placement {
            entries: ENTRIES_1M,
            pushes,
            ext: false,
            locks: false,
        };
        run_all(p, &[true], rand);
    }
    println!("\n EXTENDABLE BUCKETS PERFORMANCE");
    let ext = Placement {
        entries: ENTRIES_1M,
        ..ext
    };
    run_all(ext, &[true], rand);
}

/// Takes `--sections=LIST` out of `args`: the sections to run (all without it).
fn take_sections(args: &mut Vec<String>) -> Vec<String> {
    let Some(at) = args.iter().position(|a| a.starts_with("--sections=")) else {
        return SECTIONS.map(String::from).to_vec();
    };
    let list = args.remove(at);
    let chosen: Vec<String> = list["--sections=".len()..]
        .split(',')
        .map(String::from)
        .collect();
    if let Some(bad) = chosen.iter().find(|c| !SECTIONS.contains(&c.as_str())) {
        die(format_args!(
            "--sections: no section '{bad}': the sections are {}",
            SECTIONS.join(", ")
        ));
    }
    chosen
}

// ---- hash_readwrite_lf_perf_autotest ----

const LF_ENTRIES: u32 = 4 * 1024 * 1024;
const BULK_LOOKUP_SIZE: usize = 32;
/// Readers (and writers) each case runs with, in turn.
const CORE_COUNTS: [usize; 3] = [1, 2, 4];

type Key4 = [u8; 4];

/// The test's key sets.
struct LfKeys {
    /// Keys that fit their primary bucket, in the order added.
    no_ks: Vec<Key4>,
    /// Keys whose primary bucket was full: adding them shifts keys (repeats kept, as DPDK's).
    ks: Vec<Key4>,
    /// Numbers below 4M that are neither.
    absent: Vec<Key4>,
    /// The keys of each primary bucket a key of `ks` found full.
    shift_path: Vec<Key4>,
    /// The keys of every other bucket.
    non_shift_path: Vec<Key4>,
    /// Keys of `ks` the table without extendable buckets refused.
    ext_bkt: Vec<Key4>,
    /// Keys to delete beside lookups of `ext_bkt` (see the header).
    ks_extbkt: Vec<Key4>,
}

#[derive(Clone, Copy)]
enum Read {
    Miss,
    NoKs,
    ShiftPath,
    NonShiftPath,
    ExtBkt,
}

#[derive(Clone, Copy)]
enum Change {
    AddNoKs,
    AddKs,
    DeleteKsExtbkt,
}

impl LfKeys {
    fn read(&self, r: Read) -> &[Key4] {
        match r {
            Read::Miss => &self.absent,
            Read::NoKs => &self.no_ks,
            Read::ShiftPath => &self.shift_path,
            Read::NonShiftPath => &self.non_shift_path,
            Read::ExtBkt => &self.ext_bkt,
        }
    }
}

fn lf_params(extendable: bool) -> HashParams<'static> {
    HashParams {
        name: "tests",
        entries: LF_ENTRIES,
        key_len: 4,
        function: HashFunction::Crc32c,
        init_val: 0,
        extendable,
    }
}

/// DPDK's generate_keys. Its test asks its table (rte_hash_iterate) which keys a bucket holds
/// while it fills it with keys that fit their primary bucket; each such key takes the first
/// free slot there, so counting per bucket gives the same sets.
fn generate_lf_keys() -> LfKeys {
    println!("Generating keys...");
    let h = create(&lf_params(false));
    let layout = Layout::new(LF_ENTRIES);
    let nb = layout.buckets();
    let slots = BUCKET_SIZE as usize;
    let mut bucket = vec![0u32; nb * slots];
    let mut fill = vec![0usize; nb];
    let mut scanned = vec![false; nb];
    let (mut no_ks, mut ks, mut shift_path) = (Vec::new(), Vec::new(), Vec::new());
    let (mut a, mut b) = (0u32, 1u32);
    for i in 0..LF_ENTRIES {
        let key = a;
        (a, b) = (b, a.wrapping_add(b));
        let sig = ok(h.hash(&key.to_ne_bytes()), "hash");
        let p = layout.primary(sig);
        let held = &bucket[p * slots..p * slots + fill[p]];
        if held.contains(&key) {
            continue;
        }
        if fill[p] == slots {
            if !scanned[p] {
                shift_path.extend_from_slice(held);
                scanned[p] = true;
            }
            ks.push(key);
            continue;
        }
        ok(h.add(&key.to_ne_bytes(), i as u64), "add");
        bucket[p * slots + fill[p]] = key;
        fill[p] += 1;
        no_ks.push(key);
    }
    let mut found = vec![false; LF_ENTRIES as usize];
    for &k in no_ks.iter().chain(&ks) {
        if k < LF_ENTRIES {
            found[k as usize] = true;
        }
    }
    let absent: Vec<u32> = (0..LF_ENTRIES).filter(|&k| !found[k as usize]).collect();
    let non_shift_path: Vec<u32> = (0..nb)
        .filter(|&p| !scanned[p])
        .flat_map(|p| bucket[p * slots..p * slots + fill[p]].iter().copied())
        .collect();

    // Which keys extended buckets would hold, and the secondary buckets they hang from.
    scanned.fill(false);
    let mut ext_bkt = Vec::new();
    for &key in &ks {
        if h.add(&key.to_ne_bytes(), 0).is_err() {
            ext_bkt.push(key);
            scanned[layout.secondary(ok(h.hash(&key.to_ne_bytes()), "hash"))] = true;
        }
    }
    let mut ks_extbkt = Vec::new();
    for b in (0..nb).filter(|&b| scanned[b]) {
        let mut next = (b * slots) as u32;
        while let Some(e) = h.iterate(&mut next) {
            if (next as usize - 1) / slots > b {
                break;
            }
            ks_extbkt.push(u32::from_ne_bytes(ok(
                e.key.as_slice().try_into(),
                "a 4-byte key",
            )));
        }
    }
    ok(h.free(), "freeing a table");

    let bytes = |v: Vec<u32>| -> Vec<Key4> { v.into_iter().map(u32::to_ne_bytes).collect() };
    let keys = LfKeys {
        no_ks: bytes(no_ks),
        ks: bytes(ks),
        absent: bytes(absent),
        shift_path: bytes(shift_path),
        non_shift_path: bytes(non_shift_path),
        ext_bkt: bytes(ext_bkt),
        ks_extbkt: bytes(ks_extbkt),
    };
    for (what, n) in [
        (
            "\nCount of keys NOT causing shifting of existing keys to alternate location",
            keys.no_ks.len(),
        ),
        (
            "\nCount of keys causing shifting of existing keys to alternate locations",
            keys.ks.len(),
        ),
        (
            "\nCount of absent keys that will never be added to the hash table",
            keys.absent.len(),
        ),
        (
            "Count of keys likely to be on the shift path",
            keys.shift_path.len(),
        ),
        (
            "Count of keys not likely to be on the shift path",
            keys.non_shift_path.len(),
        ),
        ("Count of keys in extended buckets", keys.ext_bkt.len()),
        (
            "Count of keys shifting keys in ext buckets",
            keys.ks_extbkt.len(),
        ),
    ] {
        println!("{what}: {n}\n");
    }
    keys
}

/// DPDK's write_keys (adds: keys that fit their primary bucket must go in) and the deletes of
/// the extended-bucket case.
fn write(h: Hash, keys: &LfKeys, w: Change) {
    // DPDK's lock-free table with one writer takes no lock: ours holds it for the pass.
    let h = h.writer();
    match w {
        Change::AddNoKs => {
            for (i, k) in keys.no_ks.iter().enumerate() {
                if h.add(k, 0).is_err() {
                    die(format_args!("writer failed {i}"));
                }
            }
        }
        Change::AddKs => {
            for k in &keys.ks {
                let _ = h.add(k, 0);
            }
        }
        Change::DeleteKsExtbkt => {
            for k in &keys.ks_extbkt {
                if !matches!(h.delete(k), Ok(Some(_))) {
                    die(format_args!("delete failed: {}", u32::from_ne_bytes(*k)));
                }
            }
        }
    }
}

/// What the readers of one case add up, and the flag that stops them.
#[derive(Default)]
struct Readers {
    cycles: AtomicU64,
    reads: AtomicU64,
    writer_done: AtomicBool,
}

/// DPDK's test_rwc_reader: passes over the keys (one at a time, or in bulks of 32 and the
/// rest) until the writer is done, each lookup checked; its cycles and lookups added to `r`.
fn reader(h: Hash, keys: &[Key4], miss: bool, bulk: bool, r: &Readers) -> Result<(), String> {
    let wrong = |k: &Key4| Err(format!("lookup failed! {}", u32::from_ne_bytes(*k)));
    let mut passes = 0u64;
    let mut found = [0u64; BULK_LOOKUP_SIZE];
    let begin = rdtsc_precise();
    loop {
        if bulk {
            for chunk in keys.chunks(BULK_LOOKUP_SIZE) {
                let mut burst: [&[u8]; BULK_LOOKUP_SIZE] = [&[]; BULK_LOOKUP_SIZE];
                for (slot, k) in burst.iter_mut().zip(chunk) {
                    *slot = &k[..];
                }
                let hits = h
                    .lookup_bulk(&burst[..chunk.len()], &mut found)
                    .map_err(|e| e.to_string())?;
                for (j, k) in chunk.iter().enumerate() {
                    if (hits & (1 << j) != 0) == miss {
                        return wrong(k);
                    }
                }
            }
        } else {
            for k in keys {
                if h.lookup(k).map_err(|e| e.to_string())?.is_some() == miss {
                    return wrong(k);
                }
            }
        }
        passes += 1;
        if r.writer_done.load(Ordering::Acquire) {
            break;
        }
    }
    let cycles = rdtsc_precise() - begin;
    r.cycles.fetch_add(cycles, Ordering::Relaxed);
    r.reads
        .fetch_add(keys.len() as u64 * passes, Ordering::Relaxed);
    Ok(())
}

/// The lcores of this process: the main one, then the workers in id order.
struct Lcores {
    eal: &'static eal::Eal,
    workers: Vec<u32>,
}

impl Lcores {
    fn count(&self) -> usize {
        self.workers.len() + 1
    }

    /// Readers of `read` on the first `n` workers.
    fn launch_readers(
        &self,
        n: usize,
        h: Hash,
        keys: &Arc<LfKeys>,
        read: (Read, bool),
        r: &Arc<Readers>,
    ) -> Vec<eal::LcoreThread> {
        let (read, bulk) = read;
        let miss = matches!(read, Read::Miss);
        self.workers[..n]
            .iter()
            .map(|&l| {
                let (keys, r) = (keys.clone(), r.clone());
                let run = move || match reader(h, keys.read(read), miss, bulk, &r) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("hash_perf: {e}");
                        -1
                    }
                };
                ok(self.eal.remote_launch(l, run), "launching a reader")
            })
            .collect()
    }
}

fn wait_all(threads: Vec<eal::LcoreThread>) {
    for t in threads {
        let lcore = t.lcore();
        if t.wait() != 0 {
            die(format_args!("the function on lcore {lcore} failed"));
        }
    }
}

/// The readers' cycles per lookup, as DPDK prints them.
fn print_cycles(r: &Readers) {
    let reads = r.reads.load(Ordering::Relaxed);
    match r.cycles.load(Ordering::Relaxed).checked_div(reads) {
        Some(c) => println!("Cycles per lookup: {c}"),
        None => die("the readers made no lookup"),
    }
}

/// A case with one writer, the main lcore: what it writes before the readers start, and
/// what while they run (with nothing, it is done before they start and each reads once).
struct LfCase {
    title: &'static str,
    read: Read,
    before: &'static [Change],
    during: Option<Change>,
}

const HIT: LfCase = LfCase {
    title: "Hash add - no key-shifts, read - hit",
    read: Read::NoKs,
    before: &[Change::AddNoKs],
    during: None,
};
const MISS: LfCase = LfCase {
    title: "Hash add - no key-shifts, Hash lookup - miss",
    read: Read::Miss,
    before: &[],
    during: Some(Change::AddNoKs),
};
const KS_HIT_NSP: LfCase = LfCase {
    title: "Hash add - key shift, Hash lookup - hit (non-shift-path)",
    read: Read::NonShiftPath,
    before: &[Change::AddNoKs],
    during: Some(Change::AddKs),
};
const KS_HIT_SP: LfCase = LfCase {
    title: "Hash add - key shift, Hash lookup - hit (shift-path)",
    read: Read::ShiftPath,
    ..KS_HIT_NSP
};
const KS_MISS: LfCase = LfCase {
    title: "Hash add - key shift, Hash lookup - miss",
    read: Read::Miss,
    ..KS_HIT_NSP
};
const EXT_HIT: LfCase = LfCase {
    title: "Hash add - key-shifts, read - hit (ext_bkt)",
    read: Read::ExtBkt,
    before: &[Change::AddNoKs, Change::AddKs],
    during: Some(Change::DeleteKsExtbkt),
};

/// Each reader count one key at a time, then in bulks, up to the first that needs more
/// lcores than there are.
fn single_writer(l: &Lcores, keys: &Arc<LfKeys>, c: &LfCase) {
    let h = create(&lf_params(true));
    println!("\nTest: {}", c.title);
    'all: for bulk in [false, true] {
        if bulk {
            println!("\n** With bulk-lookup **");
        }
        for n in CORE_COUNTS {
            if l.count() < n + 1 {
                break 'all;
            }
            println!("\nNumber of readers: {n}");
            let r = Arc::new(Readers::default());
            h.reset();
            for &w in c.before {
                write(h, keys, w);
            }
            r.writer_done.store(c.during.is_none(), Ordering::Release);
            let readers = l.launch_readers(n, h, keys, (c.read, bulk), &r);
            if let Some(w) = c.during {
                write(h, keys, w);
                r.writer_done.store(true, Ordering::Release);
            }
            wait_all(readers);
            print_cycles(&r);
        }
    }
    ok(h.free(), "freeing a table");
}

/// Readers of keys on the shift path while 2, then 4 writers on worker lcores share the
/// adds of the keys that shift keys.
fn multi_add_lookup(l: &Lcores, keys: &Arc<LfKeys>) {
    let h = create(&lf_params(true));
    println!("\nTest: Multi-add-lookup");
    // DPDK's test never clears its bulk flag: after the first writer count, its cases "one
    // key at a time" look up in bulks too.
    let mut bulk = false;
    'all: for writers in CORE_COUNTS.into_iter().skip(1) {
        let share = keys.ks.len() / writers;
        for second in [false, true] {
            if second {
                println!("\n** With bulk-lookup **");
                bulk = true;
            }
            for n in CORE_COUNTS {
                if l.count() < n + writers + 1 {
                    break 'all;
                }
                println!("\nNumber of writers: {writers}");
                println!("Number of readers: {n}");
                let r = Arc::new(Readers::default());
                h.reset();
                write(h, keys, Change::AddNoKs);
                let readers = l.launch_readers(n, h, keys, (Read::ShiftPath, bulk), &r);
                let adders: Vec<_> = (0..writers)
                    .map(|w| {
                        let keys = keys.clone();
                        let add = move || {
                            for k in &keys.ks[w * share..(w + 1) * share] {
                                let _ = h.add(k, 0);
                            }
                            0
                        };
                        ok(
                            l.eal.remote_launch(l.workers[n + w], add),
                            "launching a writer",
                        )
                    })
                    .collect();
                wait_all(adders);
                r.writer_done.store(true, Ordering::Release);
                wait_all(readers);
                print_cycles(&r);
            }
        }
    }
    ok(h.free(), "freeing a table");
}

fn readwrite_lf(eal: &'static eal::Eal) {
    let l = Lcores {
        eal,
        workers: eal.lcores().workers().collect(),
    };
    if l.count() < 2 {
        println!("Not enough cores for hash_readwrite_lf_perf_autotest, expecting at least 2");
        return;
    }
    let keys = Arc::new(generate_lf_keys());
    println!("Test lookup with read-write concurrency lock free support enabled");
    for c in [&HIT, &MISS, &KS_HIT_NSP, &KS_HIT_SP, &KS_MISS] {
        single_writer(&l, &keys, c);
    }
    multi_add_lookup(&l, &keys);
    single_writer(&l, &keys, &EXT_HIT);
}

fn main() {
    let (_, mut args) = common::take_release("hash_perf");
    let sections = take_sections(&mut args);
    let run = |s: &str| sections.iter().any(|c| c == s);
    common::default_eal_options(&mut args, "hash_perf", 1024);
    let (eal, _) = eal::init_or_exit(&args);
    let mut rand = Rand(rdtsc() | 1);
    hash_perf(&mut rand, run);
    if run("lf") {
        readwrite_lf(eal);
    }
    eal.cleanup();
}
