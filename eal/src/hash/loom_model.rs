//! Loom models of the hash table: a reader's lookups, single and bulk, against a writer's
//! cuckoo move, chain compaction and reused key slot, and writers killed before each of
//! their writes in turn then taken over, with the repair, by the next, on the table's own
//! code (its atomics come from `crate::sync`). The table is the smallest with two main
//! buckets, 16 entries of one-byte keys, whose hashes the models choose so as to force the
//! moves. Run with `RUSTFLAGS="--cfg loom" cargo test -p rpmd-eal --release --lib loom_model`.

use super::tests::{local, Local};
use super::{Hash, HashFunction};
use crate::sync::{at_every_kill_point, explore, killed_before_write, Ordering};
use loom::thread;
use std::sync::Arc;

/// The smallest table with two main buckets: with one, no key has another bucket to move to.
const ENTRIES: u32 = 16;

/// A one-byte key and the hash the model gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    byte: u8,
    hash: u32,
}

/// Key `byte` with primary bucket `prim` and signature `sig`. With two main buckets an odd
/// signature's other bucket is the other one, an even one's is `prim` itself.
const fn key(byte: u8, prim: u32, sig: u16) -> Key {
    Key {
        byte,
        hash: (sig as u32) << 16 | prim,
    }
}

impl Key {
    fn data(self) -> u64 {
        1000 + u64::from(self.byte)
    }

    fn add(self, h: &Hash) {
        h.add_with_hash(&[self.byte], self.hash, self.data())
            .expect("room for the key");
    }

    fn lookup(self, h: &Hash) -> Option<u64> {
        h.lookup_with_hash(&[self.byte], self.hash)
            .expect("a one-byte key")
    }

    fn delete(self, h: &Hash) -> Option<u64> {
        h.delete_with_hash(&[self.byte], self.hash)
            .expect("a one-byte key")
    }
}

/// `keys` looked up in one bulk lookup: each key's data, if found.
fn lookup_bulk<const N: usize>(keys: [Key; N], h: &Hash) -> [Option<u64>; N] {
    let bytes = keys.map(|k| [k.byte]);
    let refs = bytes.each_ref().map(|b| b.as_slice());
    let mut data = [0; N];
    let hits = h
        .lookup_bulk_with_hash(&refs, &keys.map(|k| k.hash), &mut data)
        .expect("one-byte keys");
    std::array::from_fn(|i| (hits & 1 << i != 0).then_some(data[i]))
}

/// Bucket 0 full of keys whose other bucket is bucket 1; the first, in lane 0, is the one
/// a cuckoo move moves.
const CUCKOO_FULL: [Key; 8] = [
    key(1, 0, 3),
    key(2, 0, 5),
    key(3, 0, 7),
    key(4, 0, 9),
    key(5, 0, 11),
    key(6, 0, 13),
    key(7, 0, 15),
    key(8, 0, 17),
];
/// A key whose two buckets are bucket 0: added to the full bucket, it moves key 1 to
/// bucket 1 and takes its lane.
const CUCKOO_MOVER: Key = key(9, 0, 18);

/// Bucket 0 full of keys that have no other bucket, and one more, in its chain.
const CHAIN_FULL: [Key; 8] = [
    key(1, 0, 2),
    key(2, 0, 4),
    key(3, 0, 6),
    key(4, 0, 8),
    key(5, 0, 10),
    key(6, 0, 12),
    key(7, 0, 14),
    key(8, 0, 16),
];
const CHAINED: Key = key(10, 0, 20);
/// Added after key 1's delete moved [`CHAINED`] up into bucket 0: chained in the bucket
/// and the key slot the delete freed.
const CHAIN_REUSER: Key = key(11, 0, 22);

/// A table of 16 entries (two main buckets; two extendable ones if `extendable`) holding
/// `keys`, added in order.
fn table(extendable: bool, keys: &[Key]) -> Arc<Local> {
    let t = Arc::new(local(ENTRIES, 1, extendable, HashFunction::Jhash));
    for k in keys {
        k.add(&t.hash);
    }
    t
}

/// The key slot holding `k`.
fn slot_of(h: &Hash, k: Key) -> u32 {
    h.iter()
        .find(|e| e.key == [k.byte])
        .map(|e| e.position + 1)
        .expect("the key is present")
}

/// Checks the table as a writer finds it: each of `present` with its data, each of `maybe`
/// with its data or absent, and nothing else; every key in one entry, the count theirs;
/// each key slot named by one entry or on the free stack, once; each extendable bucket in
/// one chain or on its free stack, once. Returns the keys of `maybe` present.
fn check_table(h: &Hash, present: &[Key], maybe: &[Key]) -> Vec<Key> {
    for k in present {
        assert_eq!(k.lookup(h), Some(k.data()), "{k:?}");
    }
    let found: Vec<Key> = maybe
        .iter()
        .copied()
        .filter(|k| {
            let got = k.lookup(h);
            assert!(got.is_none() || got == Some(k.data()), "{k:?}: {got:?}");
            got.is_some()
        })
        .collect();
    let entries: Vec<_> = h.iter().collect();
    let mut seen: Vec<(Vec<u8>, u64)> = entries.iter().map(|e| (e.key.clone(), e.data)).collect();
    let mut want: Vec<(Vec<u8>, u64)> = present
        .iter()
        .chain(&found)
        .map(|k| (vec![k.byte], k.data()))
        .collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want, "the table's entries");
    assert_eq!(h.count() as usize, want.len(), "the count");
    let t = &h.t;
    let w = &t.header().writer;
    let mut slots: Vec<u32> = entries.iter().map(|e| e.position + 1).collect();
    slots.extend(
        (0..w.free_slots.load(Ordering::Acquire)).map(|i| t.free_slot(i).load(Ordering::Relaxed)),
    );
    slots.sort_unstable();
    assert_eq!(
        slots,
        (1..=ENTRIES).collect::<Vec<_>>(),
        "key slots named or free"
    );
    let ext = t.geo.ext_buckets;
    let mut buckets: Vec<u32> = (0..ext)
        .map(|i| t.free_ext(i))
        .take(w.free_ext.load(Ordering::Acquire) as usize)
        .map(|e| e.load(Ordering::Relaxed))
        .collect();
    for head in 0..t.geo.num_buckets {
        // At most `ext` links: a loop shows as a bucket twice.
        let mut b = t.bucket(head);
        for _ in 0..=ext {
            let Some(e) = b.next.load(Ordering::Acquire).checked_sub(1) else {
                break;
            };
            buckets.push(e);
            b = t.ext_bucket(e).expect("a chain names an extendable bucket");
        }
    }
    buckets.sort_unstable();
    assert_eq!(
        buckets,
        (0..ext).collect::<Vec<_>>(),
        "extendable buckets chained or free"
    );
    found
}

/// The next writer after the victim's: a killed victim left the lock naming it and is
/// known dead (the join stands for the kernel telling so; all model threads share one
/// thread id, so the lock's liveness check cannot tell), and the writer takes the lock over
/// from it with the repair, as `Layout::writer` does from a dead id.
fn take_over_from(h: &Hash, killed: bool) {
    let holder = h.t.header().writer.lock.load();
    if killed {
        assert!(h.t.take_over(holder), "the dead writer held the lock");
    } else {
        assert_eq!(holder, 0, "a writer that finished unlocked");
    }
}

/// An add into a full bucket moves key 1 to its other bucket while a reader looks it up.
#[test]
fn a_lookup_never_misses_a_key_a_cuckoo_move_moves() {
    explore(|| {
        let t = table(false, &CUCKOO_FULL);
        let moved = CUCKOO_FULL[0];
        let reader = {
            let t = t.clone();
            thread::spawn(move || moved.lookup(&t.hash))
        };
        CUCKOO_MOVER.add(&t.hash);
        assert_eq!(reader.join().expect("reader"), Some(moved.data()));
        assert_eq!(
            t.hash.t.bucket(1).key_idx[0].load(Ordering::Relaxed),
            slot_of(&t.hash, moved),
            "the add moved key 1 to bucket 1"
        );
        check_table(&t.hash, &[&CUCKOO_FULL[..], &[CUCKOO_MOVER]].concat(), &[]);
    });
}

/// The same move while a bulk lookup looks up the key it moves, a key that stays, and one
/// that is absent (the bulk lookup's own search again).
#[test]
fn a_bulk_lookup_never_misses_a_key_a_cuckoo_move_moves() {
    explore(|| {
        let t = table(false, &CUCKOO_FULL);
        let [moved, stays] = [CUCKOO_FULL[0], CUCKOO_FULL[1]];
        let reader = {
            let t = t.clone();
            thread::spawn(move || lookup_bulk([moved, stays, CHAINED], &t.hash))
        };
        CUCKOO_MOVER.add(&t.hash);
        assert_eq!(
            reader.join().expect("reader"),
            [Some(moved.data()), Some(stays.data()), None]
        );
        check_table(&t.hash, &[&CUCKOO_FULL[..], &[CUCKOO_MOVER]].concat(), &[]);
    });
}

/// A delete moves the chained key up into its hole, and an add reuses the slot and the
/// bucket it freed, while a reader looks the chained key up.
#[test]
fn a_lookup_never_misses_a_key_a_delete_moves_up_its_chain() {
    explore(|| {
        let t = table(true, &[&CHAIN_FULL[..], &[CHAINED]].concat());
        let reader = {
            let t = t.clone();
            thread::spawn(move || CHAINED.lookup(&t.hash))
        };
        // The delete moves the chained key into the hole and gives the emptied extendable
        // bucket back; the add takes that bucket, and the deleted key's slot, again.
        let gone = CHAIN_FULL[0];
        assert_eq!(gone.delete(&t.hash), Some(gone.data()));
        CHAIN_REUSER.add(&t.hash);
        assert_eq!(reader.join().expect("reader"), Some(CHAINED.data()));
        let h = &t.hash;
        assert_eq!(
            (
                h.t.bucket(0).key_idx[0].load(Ordering::Relaxed),
                slot_of(h, CHAIN_REUSER)
            ),
            (slot_of(h, CHAINED), 1),
            "the delete moved the chained key up; the add reused the deleted key's slot"
        );
        check_table(
            h,
            &[&CHAIN_FULL[1..], &[CHAINED, CHAIN_REUSER]].concat(),
            &[],
        );
    });
}

/// A delete frees a key slot and an add refills it at once while a reader looks up the
/// old key, the new one and one that stays.
#[test]
fn a_lookup_never_gets_the_data_of_the_key_a_reused_slot_held() {
    // The new key has the deleted one's hash: it takes its lane as well as its slot.
    let [stays, gone, new] = [key(1, 0, 3), key(2, 0, 5), key(3, 0, 5)];
    explore(move || {
        let t = table(false, &[stays, gone]);
        let reader = {
            let t = t.clone();
            thread::spawn(move || [gone, new, stays].map(|k| k.lookup(&t.hash)))
        };
        let slot = slot_of(&t.hash, gone);
        assert_eq!(gone.delete(&t.hash), Some(gone.data()));
        new.add(&t.hash);
        assert_eq!(slot_of(&t.hash, new), slot, "the slot is reused");
        let [g, n, s] = reader.join().expect("reader");
        assert!(g.is_none() || g == Some(gone.data()), "deleted key: {g:?}");
        assert!(n.is_none() || n == Some(new.data()), "new key: {n:?}");
        assert_eq!(s, Some(stays.data()));
        check_table(&t.hash, &[stays, new], &[]);
    });
}

/// The cuckoo add killed before each of its writes, then repaired while a reader looks up
/// the key it moves.
#[test]
fn an_add_killed_at_any_step_leaves_every_key_to_the_next_writer() {
    at_every_kill_point(|k| {
        let t = table(false, &CUCKOO_FULL);
        let moved = CUCKOO_FULL[0];
        let reader = {
            let t = t.clone();
            thread::spawn(move || moved.lookup(&t.hash))
        };
        let victim = {
            let t = t.clone();
            thread::spawn(move || killed_before_write(Some(k), || CUCKOO_MOVER.add(&t.hash)))
        };
        let killed = victim.join().expect("victim").is_none();
        // The repair runs while the reader may still be searching.
        take_over_from(&t.hash, killed);
        assert_eq!(reader.join().expect("reader"), Some(moved.data()));
        let added = check_table(&t.hash, &CUCKOO_FULL, &[CUCKOO_MOVER]);
        assert!(killed || added == [CUCKOO_MOVER], "a finished add");
        // The next writer adds the key (or finds it and sets its data): the repaired free
        // stack has room.
        CUCKOO_MOVER.add(&t.hash);
        check_table(&t.hash, &[&CUCKOO_FULL[..], &[CUCKOO_MOVER]].concat(), &[]);
        killed
    });
}

/// The delete that compacts a chain killed before each of its writes, then repaired while
/// a reader looks up the key it moves.
#[test]
fn a_delete_killed_at_any_step_leaves_every_key_to_the_next_writer() {
    at_every_kill_point(|k| {
        let t = table(true, &[&CHAIN_FULL[..], &[CHAINED]].concat());
        let gone = CHAIN_FULL[0];
        let reader = {
            let t = t.clone();
            thread::spawn(move || CHAINED.lookup(&t.hash))
        };
        let victim = {
            let t = t.clone();
            thread::spawn(move || killed_before_write(Some(k), || gone.delete(&t.hash)))
        };
        let outcome = victim.join().expect("victim");
        take_over_from(&t.hash, outcome.is_none());
        assert_eq!(reader.join().expect("reader"), Some(CHAINED.data()));
        let stays = [&CHAIN_FULL[1..], &[CHAINED]].concat();
        let left = check_table(&t.hash, &stays, &[gone]);
        match outcome {
            Some(data) => assert_eq!((data, &left[..]), (Some(gone.data()), &[][..])),
            // The next writer deletes the key again if the victim died before its entry's
            // clearing: its chain is compacted in full.
            None => assert_eq!(gone.delete(&t.hash), left.first().map(|k| k.data())),
        }
        check_table(&t.hash, &stays, &[]);
        outcome.is_none()
    });
}
