//! hash_instr: one workload of our hash table, for `scripts/bench hash-instr`, which runs it
//! under callgrind twice (one pass and three) and divides the difference by the operations
//! of two passes: the instructions of one operation, without the set-up. `hash_instr.c`
//! beside it is the same program on DPDK's `rte_hash`.
//!
//! `hash_instr [EAL options] -- MODE PASSES KEY_LEN`: a table of 2^16 entries (jhash, init
//! value 0) holding 49,152 keys of KEY_LEN bytes (a count in the first four bytes, its low
//! byte again in the last), then PASSES passes over them in their order, each of one MODE:
//! - `lookup`, `lookup-hash`: one lookup per key, the hash computed by the call or given;
//! - `bulk`, `bulk-hash`: lookups in bursts of 16;
//! - `del-add-hash`: every key deleted, then every key added again, the hash given (one
//!   writer held over each pass, as DPDK's table without locks is promised one writer).
//!
//! Prints the number of keys and of hits, which the script checks.

use eal::hash::{Hash, HashFunction, HashParams};

const ENTRIES: u32 = 1 << 16;
const BURST: usize = 16;

fn die(what: impl std::fmt::Display) -> ! {
    eprintln!("hash_instr: {what}");
    std::process::exit(2)
}

fn main() {
    let all: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let Some(sep) = all.iter().position(|a| a == "--") else {
        die("usage: hash_instr [EAL options] -- MODE PASSES KEY_LEN")
    };
    let (eal_args, rest) = (&all[..sep], &all[sep + 1..]);
    let [mode, passes, key_len] = rest else {
        die("usage: hash_instr [EAL options] -- MODE PASSES KEY_LEN")
    };
    let passes: usize = passes.parse().unwrap_or_else(|_| die("PASSES: a number"));
    let key_len: usize = key_len
        .parse()
        .ok()
        .filter(|l| (4..=256).contains(l))
        .unwrap_or_else(|| die("KEY_LEN: 4 to 256"));
    let (eal, _) = eal::init_or_exit(eal_args);
    let h = Hash::create(&HashParams {
        name: "hash_instr",
        entries: ENTRIES,
        key_len: key_len as u32,
        function: HashFunction::Jhash,
        init_val: 0,
        extendable: false,
    })
    .unwrap_or_else(|e| die(e));
    // The keys one after another, as DPDK's side keeps them.
    let want = ENTRIES as usize / 4 * 3;
    let mut store = vec![0u8; want * key_len];
    let mut hashes = Vec::with_capacity(want);
    for i in 0..want {
        let k = &mut store[hashes.len() * key_len..][..key_len];
        k[..4].copy_from_slice(&(i as u32).wrapping_mul(2_654_435_761).to_le_bytes());
        k[key_len - 1] = i as u8;
        // A key the table has no room for is overwritten by the next, as on DPDK's side.
        if h.add(k, i as u64 + 1).is_ok() {
            hashes.push(h.hash(k).unwrap_or_else(|e| die(e)));
        }
    }
    let n = hashes.len();
    let keys: Vec<&[u8]> = store.chunks_exact(key_len).take(n).collect();
    let mut hits = 0u64;
    let mut data = [0u64; BURST];
    for _ in 0..passes {
        match mode.as_str() {
            "lookup" => {
                for k in &keys {
                    hits += u64::from(h.lookup(k).unwrap_or_else(|e| die(e)).is_some());
                }
            }
            "lookup-hash" => {
                for (k, &hash) in keys.iter().zip(&hashes) {
                    let found = h.lookup_with_hash(k, hash).unwrap_or_else(|e| die(e));
                    hits += u64::from(found.is_some());
                }
            }
            "bulk" | "bulk-hash" => {
                for (ks, hs) in keys.chunks_exact(BURST).zip(hashes.chunks_exact(BURST)) {
                    let burst: [&[u8]; BURST] = std::array::from_fn(|j| ks[j]);
                    let found = if mode == "bulk" {
                        h.lookup_bulk(&burst, &mut data)
                    } else {
                        h.lookup_bulk_with_hash(&burst, hs, &mut data)
                    };
                    hits += u64::from(found.unwrap_or_else(|e| die(e)).count_ones());
                }
            }
            "del-add-hash" => {
                let w = h.writer();
                for (k, &hash) in keys.iter().zip(&hashes) {
                    w.delete_with_hash(k, hash).unwrap_or_else(|e| die(e));
                }
                for (i, (k, &hash)) in keys.iter().zip(&hashes).enumerate() {
                    w.add_with_hash(k, hash, i as u64 + 1)
                        .unwrap_or_else(|e| die(e));
                    hits += 1;
                }
            }
            _ => die(format_args!(
                "no mode '{mode}': lookup, lookup-hash, bulk, bulk-hash or del-add-hash"
            )),
        }
    }
    println!("keys {n} hits {hits}");
    eal.cleanup();
}
