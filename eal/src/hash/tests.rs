//! Tests of the table in this process's own memory (`Hash::init_at`); the tests across
//! processes, with writers killed at every store, are in tests/ (crash_points, hash), and
//! the loom models in `loom_model.rs`.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// A table in memory of this process, freed with it.
pub(super) struct Local {
    mem: NonNull<u8>,
    layout: std::alloc::Layout,
    pub(super) hash: Hash,
}

// SAFETY: the table is used through atomics only (see Hash).
unsafe impl Send for Local {}
// SAFETY: as above.
unsafe impl Sync for Local {}

impl Drop for Local {
    fn drop(&mut self) {
        // SAFETY: allocated in `local` with this layout, and no handle outlives `self`.
        unsafe { std::alloc::dealloc(self.mem.as_ptr(), self.layout) };
    }
}

pub(super) fn local(entries: u32, key_len: u32, extendable: bool, function: HashFunction) -> Local {
    let p = HashParams {
        name: "test",
        entries,
        key_len,
        function,
        init_val: 0,
        extendable,
    };
    let size = Hash::memory_size(&p).expect("size");
    let layout = std::alloc::Layout::from_size_align(size, 64).expect("layout");
    // SAFETY: a non-zero size.
    let mem = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("memory");
    // SAFETY: fresh, zeroed, 64-aligned memory of the table's size, freed only on drop.
    let hash = unsafe { Hash::init_at(mem, &p) }.expect("init");
    Local { mem, layout, hash }
}

fn key(i: u64, len: usize) -> Vec<u8> {
    let mut k: Vec<u8> = i.to_le_bytes().iter().copied().cycle().take(len).collect();
    // Keys differ in their last bytes too.
    if let Some(last) = k.last_mut() {
        *last ^= (i >> 3) as u8;
    }
    k
}

#[test]
fn add_lookup_delete_and_update() {
    let t = local(1024, 16, false, HashFunction::Crc32c);
    let h = &t.hash;
    let pos = h.add(&key(1, 16), 100).expect("add");
    assert_eq!(h.lookup(&key(1, 16)), Ok(Some(100)));
    assert_eq!(h.position(&key(1, 16)), Ok(Some(pos)));
    assert_eq!(
        h.add(&key(1, 16), 101),
        Ok(pos),
        "an update keeps the position"
    );
    assert_eq!(h.lookup(&key(1, 16)), Ok(Some(101)));
    assert_eq!(h.count(), 1);
    assert_eq!(h.lookup(&key(2, 16)), Ok(None));
    assert_eq!(h.delete(&key(2, 16)), Ok(None));
    assert_eq!(h.delete(&key(1, 16)), Ok(Some(101)));
    assert_eq!((h.lookup(&key(1, 16)), h.count()), (Ok(None), 0));
    let hash = h.hash(&key(3, 16)).expect("hash");
    h.add_with_hash(&key(3, 16), hash, 3)
        .expect("add with hash");
    assert_eq!(h.lookup_with_hash(&key(3, 16), hash), Ok(Some(3)));
    assert_eq!(h.delete_with_hash(&key(3, 16), hash), Ok(Some(3)));
}

/// A held writer's calls, and calls on the table from its thread (nested), change the
/// table; another thread's add waits until the writer is dropped, then goes in.
#[test]
fn a_held_writer_nests_its_threads_calls_and_holds_other_threads_off() {
    let t = Arc::new(local(1024, 16, false, HashFunction::Crc32c));
    let h = t.hash;
    let lock = || h.t.header().writer.lock.load();
    let w = h.writer();
    let pos = w.add(&key(1, 16), 10).expect("add");
    assert_eq!(h.position(&key(1, 16)), Ok(Some(pos)));
    let k2 = key(2, 16);
    w.add_with_hash(&k2, h.hash(&k2).expect("hash"), 20)
        .expect("add");
    h.add(&key(3, 16), 30).expect("a nested add");
    assert_eq!(h.delete(&key(3, 16)), Ok(Some(30)), "a nested delete");
    assert_eq!(
        lock(),
        crate::sys::gettid(),
        "a nested call keeps the lock held"
    );
    assert!(matches!(
        w.add(&key(4, 15), 0),
        Err(HashError::KeyLength { .. })
    ));
    let other_done = Arc::new(AtomicBool::new(false));
    let other = {
        let (t, done) = (Arc::clone(&t), Arc::clone(&other_done));
        std::thread::spawn(move || {
            t.hash.add(&key(5, 16), 50).expect("add");
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        !other_done.load(std::sync::atomic::Ordering::SeqCst),
        "another thread's add went in under a held writer"
    );
    assert_eq!(w.delete(&key(1, 16)), Ok(Some(10)));
    assert_eq!(
        w.delete_with_hash(&k2, h.hash(&k2).expect("hash")),
        Ok(Some(20))
    );
    drop(w);
    other.join().expect("the other thread");
    assert_eq!(lock(), 0);
    assert_eq!(h.lookup(&key(5, 16)), Ok(Some(50)));
    assert_eq!(h.count(), 1);
}

#[test]
fn keys_of_the_wrong_length_are_refused() {
    let t = local(64, 16, false, HashFunction::Jhash);
    let h = &t.hash;
    let e = HashError::KeyLength {
        name: "test".into(),
        expected: 16,
        got: 15,
    };
    assert_eq!(h.add(&key(1, 15), 1), Err(e.clone()));
    assert_eq!(h.lookup(&key(1, 15)), Err(e.clone()));
    assert_eq!(h.delete(&key(1, 15)), Err(e.clone()));
    assert_eq!(h.hash(&key(1, 15)), Err(e));
    let mut data = [0u64; 65];
    let k = key(1, 16);
    let keys = vec![k.as_slice(); 65];
    assert!(matches!(
        h.lookup_bulk(&keys, &mut data),
        Err(HashError::BulkSize { .. })
    ));
    assert!(matches!(
        h.lookup_bulk(&[], &mut data),
        Err(HashError::BulkSize { .. })
    ));
    assert_eq!(h.count(), 0);
}

/// Fills a table until an add fails; checks every key added is found, with its data, and
/// that the failed add changed nothing. Returns how many fit.
fn fill(h: &Hash, key_len: usize) -> u32 {
    let mut added = 0u64;
    loop {
        match h.add(&key(added, key_len), added * 7) {
            Ok(_) => added += 1,
            Err(HashError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(h.count() as u64, added);
    for i in 0..added {
        assert_eq!(h.lookup(&key(i, key_len)), Ok(Some(i * 7)), "key {i}");
    }
    assert_eq!(h.lookup(&key(added, key_len)), Ok(None));
    added as u32
}

#[test]
fn cuckoo_moves_fill_most_of_a_table_and_extendable_buckets_all_of_it() {
    for key_len in [16, 32, 48, 13] {
        let t = local(4096, key_len, false, HashFunction::Crc32c);
        let n = fill(&t.hash, key_len as usize);
        // DPDK's tables reach over 90 % with cuckoo moves alone.
        assert!(
            n > 4096 * 9 / 10,
            "only {n} of 4096 keys of {key_len} bytes fit"
        );
        let t = local(4096, key_len, true, HashFunction::Jhash);
        assert_eq!(fill(&t.hash, key_len as usize), 4096);
        // Delete every other key: the rest stay, and the freed places take new keys.
        for i in (0..4096).step_by(2) {
            assert_eq!(t.hash.delete(&key(i, key_len as usize)), Ok(Some(i * 7)));
        }
        for i in 0..4096u64 {
            let want = (i % 2 == 1).then_some(i * 7);
            assert_eq!(t.hash.lookup(&key(i, key_len as usize)), Ok(want));
        }
        for i in 5000..7048u64 {
            t.hash
                .add(&key(i, key_len as usize), i)
                .expect("room again");
        }
        assert_eq!(t.hash.count(), 4096);
    }
}

/// Deletes compact a chain and give its emptied buckets back: a table filled to capacity
/// and emptied again, round after round with other keys each time, fills to capacity each
/// round, and every extendable bucket is back on its free stack once it is empty.
#[test]
fn emptied_chains_give_their_buckets_back() {
    let t = local(1024, 16, true, HashFunction::Jhash);
    let (h, tab) = (&t.hash, &t.hash.t);
    let free_ext = || tab.header().writer.free_ext.load(Ordering::Relaxed);
    let all_ext = free_ext();
    for round in 0..8u64 {
        let base = round * 10_000;
        for i in 0..1024 {
            h.add(&key(base + i, 16), i).expect("room at every round");
        }
        assert!(free_ext() < all_ext, "round {round}: no key in a chain");
        // Delete in an order that empties chains from their middle as well as their ends.
        for i in (0..1024).step_by(3).chain((1..1024).step_by(3)) {
            assert_eq!(h.delete(&key(base + i, 16)), Ok(Some(i)));
        }
        for i in (2..1024).step_by(3) {
            assert_eq!(h.lookup(&key(base + i, 16)), Ok(Some(i)), "round {round}");
        }
        for i in (2..1024).step_by(3) {
            assert_eq!(h.delete(&key(base + i, 16)), Ok(Some(i)));
        }
        assert_eq!((h.count(), free_ext()), (0, all_ext), "round {round}");
    }
}

#[test]
fn bulk_lookups_agree_with_single_ones() {
    let t = local(1024, 32, false, HashFunction::Crc32c);
    let h = &t.hash;
    for i in (0..128).step_by(3) {
        h.add(&key(i, 32), i + 1).expect("add");
    }
    let keys: Vec<Vec<u8>> = (0..64).map(|i| key(i * 2, 32)).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let mut data = [0u64; 64];
    let hits = h.lookup_bulk(&refs, &mut data).expect("bulk");
    for (i, k) in keys.iter().enumerate() {
        let single = h.lookup(k).expect("lookup");
        assert_eq!(single.is_some(), hits & (1 << i) != 0, "key {i}");
        if let Some(d) = single {
            assert_eq!(data[i], d);
        }
    }
    let hashes: Vec<u32> = refs.iter().map(|k| h.hash(k).expect("hash")).collect();
    let mut data2 = [0u64; 64];
    assert_eq!(
        h.lookup_bulk_with_hash(&refs, &hashes, &mut data2),
        Ok(hits)
    );
}

#[test]
fn iteration_sees_every_key_once_and_reset_empties() {
    let t = local(512, 16, true, HashFunction::Crc32c);
    let h = &t.hash;
    let n = fill(h, 16);
    let mut seen: Vec<u64> = h.iter().map(|e| e.data / 7).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n as u64).collect::<Vec<_>>());
    let e = h.iter().next().expect("a key");
    assert_eq!(h.lookup(&e.key), Ok(Some(e.data)));
    assert_eq!(h.position(&e.key), Ok(Some(e.position)));
    h.reset();
    assert_eq!((h.count(), h.iter().count()), (0, 0));
    assert_eq!(fill(h, 16), n, "a reset table holds as much again");
}

/// The states a writer killed between two of its stores leaves, made by hand, then the
/// next writer's repair.
#[test]
fn the_next_writer_repairs_what_a_dead_one_left() {
    let t = local(256, 16, true, HashFunction::Crc32c);
    let h = &t.hash;
    for i in 0..100 {
        h.add(&key(i, 16), i).expect("add");
    }
    let tab = &h.t;
    let hash = h.hash(&key(5, 16)).expect("hash");
    let prim = hash & tab.bucket_mask;
    let sig = read::short_sig(hash);
    let sec = read::alt_bucket(prim, sig) & tab.bucket_mask;
    let (from, lane) = [prim, sec]
        .into_iter()
        .find_map(|b| {
            let bucket = tab.bucket(b);
            (0..8)
                .find(|l| {
                    bucket.key_idx[*l].load(Ordering::Relaxed) != 0
                        && tab
                            .slot(bucket.key_idx[*l].load(Ordering::Relaxed))
                            .is_some_and(|s| read::SearchKey::new(&key(5, 16)).matches(s.key))
                })
                .map(|l| (b, l))
        })
        .expect("key 5 is in one of its buckets");
    let to = if from == prim { sec } else { prim };
    let idx = tab.bucket(from).key_idx[lane].load(Ordering::Relaxed);
    // A cuckoo move killed after its copy: key 5 in both buckets (if the other has room).
    let copied = match layout_free_lane(tab.bucket(to)) {
        Some(l) if to != from => {
            tab.bucket(to).fill(l, sig, idx);
            true
        }
        _ => false,
    };
    // An add killed after filling a slot, before naming it: taken, named nowhere, its new
    // version even already.
    let w = &tab.header().writer;
    let top = w.free_slots.load(Ordering::Relaxed) - 1;
    let lost = tab.free_slot(top).load(Ordering::Relaxed);
    w.free_slots.store(top, Ordering::Relaxed);
    tab.slot(lost)
        .expect("slot")
        .version
        .store(2, Ordering::Relaxed);
    // The writer died holding the lock (an id no thread has).
    w.lock.lock(i32::MAX - 9, |_| unreachable!());
    // Readers were never stopped: every key is found meanwhile.
    for i in 0..100 {
        assert_eq!(h.lookup(&key(i, 16)), Ok(Some(i)));
    }
    // The next writer repairs, then deletes key 5 for good.
    assert_eq!(h.delete(&key(5, 16)), Ok(Some(5)));
    assert_eq!(
        h.lookup(&key(5, 16)),
        Ok(None),
        "no second copy (copied: {copied})"
    );
    assert_eq!(h.count(), 99);
    // Every slot is back: the table fills to its capacity, the lost slot too, under a new
    // version.
    for i in 1000..1157 {
        h.add(&key(i, 16), i).expect("room");
    }
    assert_eq!(h.count(), 256);
    assert!((1000..1157).all(|i| h.lookup(&key(i, 16)) == Ok(Some(i))));
    let refilled = tab
        .slot(lost)
        .expect("slot")
        .version
        .load(Ordering::Relaxed);
    assert!(refilled & 1 == 0 && refilled > 2, "version {refilled}");
    assert!(matches!(
        h.add(&key(5000, 16), 0),
        Err(HashError::Full { .. })
    ));
    assert_eq!(h.count(), 256, "a failed add changes nothing");
}

fn layout_free_lane(b: &layout::Bucket) -> Option<usize> {
    let m = b.empty_lanes();
    (m != 0).then(|| m.trailing_zeros() as usize)
}

/// Readers on two threads look up keys that stay while a writer adds and deletes others
/// (cuckoo moves included, the table nearly full): every lookup of a staying key finds it
/// with its data, and one of a key never added finds nothing.
#[test]
fn iterate_from_a_bucket_gives_its_keys_first_with_the_cursor_naming_it() {
    // 64 entries: 8 main buckets; a hash whose low bits are 3 has primary bucket 3.
    let t = local(64, 8, false, HashFunction::Crc32c);
    let h = &t.hash;
    for i in 0..5u32 {
        h.add_with_hash(&key(u64::from(i), 8), 3 | (i + 1) << 16, u64::from(i))
            .expect("add");
    }
    h.add_with_hash(&key(9, 8), 6 | 9 << 16, 9).expect("add");
    let mut next = 3 * 8;
    let mut in_bucket = Vec::new();
    while let Some(e) = h.iterate(&mut next) {
        if (next - 1) / 8 > 3 {
            assert_eq!(e.data, 9, "the key of bucket 6 comes after");
            break;
        }
        in_bucket.push(e.data);
    }
    assert_eq!(in_bucket, [0, 1, 2, 3, 4]);
    assert_eq!(h.iterate(&mut next), None);
}

#[test]
fn lookups_never_miss_a_present_key_under_a_writer() {
    let t = Arc::new(local(2048, 16, true, HashFunction::Crc32c));
    for i in 0..1024u64 {
        t.hash.add(&key(i, 16), i).expect("add");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (t, stop, lookups) = (t.clone(), stop.clone(), lookups.clone());
            std::thread::spawn(move || {
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % 1024;
                    assert_eq!(t.hash.lookup(&key(k, 16)), Ok(Some(k)), "key {k}");
                    assert_eq!(t.hash.lookup(&key(1_000_000 + k, 16)), Ok(None));
                    let keys = [key(k, 16), key((k + 1) % 1024, 16)];
                    let refs = [keys[0].as_slice(), keys[1].as_slice()];
                    let mut data = [0; 2];
                    assert_eq!(t.hash.lookup_bulk(&refs, &mut data), Ok(3));
                    assert_eq!(data, [k, (k + 1) % 1024]);
                    i += 7;
                    lookups.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut round = 0u64;
    while std::time::Instant::now() < deadline {
        for i in 0..1000 {
            t.hash.add(&key(10_000 + i, 16), i).expect("churn add");
        }
        for i in 0..1000 {
            assert_eq!(t.hash.delete(&key(10_000 + i, 16)), Ok(Some(i)));
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader failed");
    }
    assert!(round > 0 && lookups.load(Ordering::Relaxed) > 0);
    assert_eq!(t.hash.count(), 1024);
}

#[test]
fn a_table_is_opened_only_whole_and_with_a_known_function() {
    let t = local(64, 16, false, HashFunction::Jhash);
    t.hash.add(&key(1, 16), 11).expect("add");
    let hdr = t.hash.t.hdr;
    let len = Hash::memory_size(&HashParams {
        name: "test",
        entries: 64,
        key_len: 16,
        function: HashFunction::Jhash,
        init_val: 0,
        extendable: false,
    })
    .expect("size") as u64;
    // SAFETY: the table's own memory, of its own length.
    let opened = unsafe { Hash::open_at(hdr, len, "HT_test") }.expect("open");
    assert_eq!(
        (opened.function(), opened.lookup(&key(1, 16))),
        (HashFunction::Jhash, Ok(Some(11)))
    );
    // SAFETY: as above; a shorter zone is refused before anything past it is read.
    let short = unsafe { Hash::open_at(hdr, len - 1, "HT_test") };
    assert_eq!(short.err(), Some(HashError::NotATable("HT_test".into())));
    // SAFETY: the header is this test's memory; nobody else uses it. A function id a later
    // build might add.
    unsafe { std::ptr::addr_of_mut!((*hdr.as_ptr()).function).write(77) };
    // SAFETY: as above.
    let unknown = unsafe { Hash::open_at(hdr, len, "HT_test") };
    assert_eq!(
        unknown.err(),
        Some(HashError::UnknownFunction {
            name: "test".into(),
            id: 77
        })
    );
}
