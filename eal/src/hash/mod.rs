//! A cuckoo hash table in shared memory, as DPDK's `rte_hash` in its lock-free read/write
//! mode, that every process of a group can use, whichever binary it runs.
//!
//! The table lives in a memzone named `HT_<name>`: buckets of eight entries with 16-bit
//! signatures, the keys and their data in a separate key store, and optionally as many
//! extendable buckets again, chained to a full bucket so that an add into a crowded
//! neighbourhood does not fail (`layout.rs`). The hash function is a stable id recorded in
//! the table, so [`Hash::add`], [`Hash::lookup`] and [`Hash::delete`] compute the hash in
//! every process (DPDK's table keeps a function pointer, which a secondary of another
//! binary must not call); the `*_with_hash` forms take a hash computed by the caller.
//!
//! Lookups take no lock and never wait (`read.rs`); one writer at a time in the whole
//! group adds and deletes, under a lock taken over, with a repair, from a writer that died
//! (`write.rs`), per call or over a burst ([`Hash::writer`]). ARCHITECTURE.md, "Crash
//! model", says what a writer's death can leave.

mod function;
mod layout;
mod read;
mod write;

pub use function::HashFunction;
pub use layout::{MAX_ENTRIES, MAX_KEY_LEN};

use crate::memzone::MemzoneFlags;
use crate::shm::ShmName;
use crate::sync::Ordering;
use function::Hasher;
use layout::{Geometry, HashHeader, Layout, BUCKET_ENTRIES};
use std::ptr::NonNull;

/// Longest table name: memzone names less the `HT_` prefix.
pub const NAME_MAX: usize = ShmName::CAPACITY - 1 - 3;
/// Most keys one [`Hash::lookup_bulk`] takes, as DPDK's `RTE_HASH_LOOKUP_BULK_MAX`.
pub const LOOKUP_BULK_MAX: usize = 64;

/// What a hash table operation can fail with; the table is unchanged by any of them.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    /// A key's length is not the table's.
    #[error("hash table '{name}' has keys of {expected} bytes, not {got}: pass keys of the table's key length")]
    KeyLength {
        /// The table.
        name: String,
        /// Its key length.
        expected: u32,
        /// The key's.
        got: usize,
    },
    /// No room for another key.
    #[error("hash table '{name}' is full ({entries} entries, no free place for the key): delete keys, or create the table with more entries or with extendable buckets")]
    Full {
        /// The table.
        name: String,
        /// Its capacity.
        entries: u32,
    },
    /// Opened with another key length than it was created with.
    #[error("hash table '{name}' was created with keys of {created} bytes, not {asked}: open it with its key length, or use Hash::find_existing")]
    KeySizeMismatch {
        /// The table.
        name: String,
        /// Its key length.
        created: u32,
        /// The one asked for.
        asked: u32,
    },
    /// The table's hash function id is not one this binary knows.
    #[error("hash table '{name}' uses hash function id {id}, which this binary does not know: rebuild it from the same source as the process that created the table")]
    UnknownFunction {
        /// The table.
        name: String,
        /// The id recorded in it.
        id: u32,
    },
    /// A table of that name exists already.
    #[error("a hash table named '{0}' already exists in this group: open it with Hash::open, or free it first")]
    Exists(String),
    /// No table of that name.
    #[error("no hash table named '{0}' in this group: has a process created it, and is this one in the same --file-prefix group?")]
    NotFound(String),
    /// The memzone does not hold a table (or not a whole one).
    #[error(
        "memzone '{0}' does not hold a hash table of this layout: was it created by this build?"
    )]
    NotATable(String),
    /// Bad creation parameters.
    #[error("hash table '{name}': {why}")]
    BadParams {
        /// The table.
        name: String,
        /// Why.
        why: String,
    },
    /// More keys than one bulk lookup takes, or fewer data slots than keys.
    #[error("a bulk lookup takes 1 to {LOOKUP_BULK_MAX} keys and as many data slots: got {keys} keys and {data} slots")]
    BulkSize {
        /// Keys given.
        keys: usize,
        /// Data slots given.
        data: usize,
    },
}

/// How to create a table, as DPDK's `rte_hash_parameters`.
#[derive(Clone, Copy, Debug)]
pub struct HashParams<'a> {
    /// Its name (1 to [`NAME_MAX`] bytes), unique in the group.
    pub name: &'a str,
    /// How many keys it holds at most (8 to [`MAX_ENTRIES`]).
    pub entries: u32,
    /// The length of every key, in bytes.
    pub key_len: u32,
    /// The hash function, recorded in the table.
    pub function: HashFunction,
    /// The function's initial value.
    pub init_val: u32,
    /// Whether full buckets chain extendable buckets (DPDK's
    /// `RTE_HASH_EXTRA_FLAGS_EXT_TABLE`), so that an add fails only when `entries` keys
    /// are present.
    pub extendable: bool,
}

/// A handle to a table, usable from every process of the group (rule 3: what is per
/// process, the CPU's CRC instruction, is checked here, not stored in the table).
#[derive(Clone, Copy, Debug)]
pub struct Hash {
    t: Layout,
    hasher: Hasher,
}

// SAFETY: every access to the table's shared state goes through atomics; writers exclude
// each other through the table's lock.
unsafe impl Send for Hash {}
// SAFETY: as above.
unsafe impl Sync for Hash {}

fn zone_name(name: &str) -> String {
    format!("HT_{name}")
}

impl Hash {
    /// Bytes a table created with `p` occupies.
    pub fn memory_size(p: &HashParams) -> crate::Result<usize> {
        Ok(Geometry::new(p.name, p.entries, p.key_len, p.extendable)?.memory_size())
    }

    /// Creates a table in a new memzone (`HT_<name>`), in hugepage memory of the group.
    pub fn create(p: &HashParams) -> crate::Result<Hash> {
        if p.name.len() > NAME_MAX {
            return Err(crate::Error::BadName {
                name: p.name.into(),
                why: "hash table names have at most 28 bytes",
            });
        }
        let geo = Geometry::new(p.name, p.entries, p.key_len, p.extendable)?;
        let eal = crate::eal()?;
        let zone = eal
            .memzone_reserve(
                &zone_name(p.name),
                geo.memory_size() as u64,
                64,
                MemzoneFlags::empty(),
            )
            .map_err(|e| match e {
                crate::Error::MemzoneExists(_) => HashError::Exists(p.name.into()).into(),
                e => e,
            })?;
        let mem =
            NonNull::new(zone.as_ptr::<u8>()).ok_or(HashError::NotATable(zone_name(p.name)))?;
        // SAFETY: the memzone is fresh, zeroed, 64-byte aligned and as large as `geo` needs.
        Ok(unsafe { Hash::init_at(mem, p) }?)
    }

    /// Lays a table out in `mem`.
    ///
    /// # Safety
    /// `mem` points at [`Hash::memory_size`] zeroed, writable bytes, aligned to 64, used
    /// for nothing else and mapped for as long as the table is used.
    pub unsafe fn init_at(mem: NonNull<u8>, p: &HashParams) -> Result<Hash, HashError> {
        let geo = Geometry::new(p.name, p.entries, p.key_len, p.extendable)?;
        let name = ShmName::new(p.name).map_err(|e| HashError::BadParams {
            name: p.name.into(),
            why: e.to_string(),
        })?;
        // SAFETY: as the caller vouches.
        let t = unsafe { Layout::init(mem, name, geo, p.function as u32, p.init_val) };
        Ok(Hash {
            t,
            hasher: Hasher::new(p.function, p.init_val),
        })
    }

    /// Finds a table created by any process of the group, whatever its key length.
    pub fn find_existing(name: &str) -> crate::Result<Hash> {
        let zone = crate::eal()?
            .memzone_lookup(&zone_name(name))
            .map_err(|_| HashError::NotFound(name.into()))?;
        let hdr = NonNull::new(zone.as_ptr::<HashHeader>())
            .ok_or(HashError::NotATable(zone.name().into()))?;
        // SAFETY: the memzone is mapped in this process at the same address, 64-aligned,
        // `zone.len()` bytes long, for as long as the group lives (until `free`).
        Ok(unsafe { Hash::open_at(hdr, zone.len(), zone.name()) }?)
    }

    /// A handle to the table whose header is at `hdr`, in a zone of `len` bytes named `zone`.
    ///
    /// # Safety
    /// `hdr` points at `len` bytes, aligned to 64, that stay mapped while the handle is used.
    unsafe fn open_at(hdr: NonNull<HashHeader>, len: u64, zone: &str) -> Result<Hash, HashError> {
        // SAFETY: as the caller vouches.
        let t = unsafe { Layout::open(hdr, len, zone) }?;
        let h = t.header();
        let function = HashFunction::from_id(h.name.as_str(), h.function)?;
        Ok(Hash {
            hasher: Hasher::new(function, h.init_val),
            t,
        })
    }

    /// Finds a table and checks that its keys are `key_len` bytes long.
    pub fn open(name: &str, key_len: u32) -> crate::Result<Hash> {
        let h = Hash::find_existing(name)?;
        if h.key_len() != key_len {
            return Err(HashError::KeySizeMismatch {
                name: name.into(),
                created: h.key_len(),
                asked: key_len,
            }
            .into());
        }
        Ok(h)
    }

    /// The names of the group's tables.
    pub fn list() -> crate::Result<Vec<String>> {
        Ok(crate::eal()?
            .memzone_list()
            .iter()
            .filter_map(|z| z.name().strip_prefix("HT_").map(String::from))
            .collect())
    }

    /// Frees the table's memory. Every process must have stopped using it.
    pub fn free(self) -> crate::Result<()> {
        crate::eal()?.memzone_free(&zone_name(self.name()))
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        self.t.header().name.as_str()
    }

    /// The length of its keys in bytes.
    pub fn key_len(&self) -> u32 {
        self.t.geo.key_len
    }

    /// How many keys it holds at most.
    pub fn capacity(&self) -> u32 {
        self.t.geo.entries
    }

    /// Its hash function.
    pub fn function(&self) -> HashFunction {
        self.hasher.function()
    }

    /// Whether full buckets chain extendable buckets.
    pub fn extendable(&self) -> bool {
        self.t.geo.ext_buckets != 0
    }

    /// How many keys it holds.
    pub fn count(&self) -> u32 {
        self.t.header().writer.count.load(Ordering::Acquire)
    }

    #[inline(always)]
    fn check(&self, key: &[u8]) -> Result<(), HashError> {
        if key.len() == self.t.geo.key_len as usize {
            Ok(())
        } else {
            Err(self.wrong_length(key))
        }
    }

    #[cold]
    fn wrong_length(&self, key: &[u8]) -> HashError {
        HashError::KeyLength {
            name: self.name().into(),
            expected: self.t.geo.key_len,
            got: key.len(),
        }
    }

    /// The key's hash with the table's function.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> Result<u32, HashError> {
        self.check(key)?;
        Ok(self.hasher.hash(key))
    }

    /// Adds `key` with `data`, or replaces the data of a key already present; returns the
    /// key's position (0 to capacity - 1), as DPDK's `rte_hash_add_key_data`.
    pub fn add(&self, key: &[u8], data: u64) -> Result<u32, HashError> {
        self.writer().add(key, data)
    }

    /// [`Hash::add`] with the key's hash given.
    pub fn add_with_hash(&self, key: &[u8], hash: u32, data: u64) -> Result<u32, HashError> {
        self.writer().add_with_hash(key, hash, data)
    }

    /// Takes the group's writers' lock for a burst of adds and deletes through the
    /// [`HashWriter`]: one lock for the burst instead of one per call. Waits while a writer
    /// of another thread or process holds it (one that died is taken over, its table
    /// repaired). Lookups are never stopped by it.
    pub fn writer(&self) -> HashWriter<'_> {
        HashWriter {
            hash: self,
            w: self.t.writer(),
        }
    }

    /// The key's data, if present.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Result<Option<u64>, HashError> {
        let hash = self.hash(key)?;
        Ok(self.t.lookup(key, hash).map(|(d, _)| d))
    }

    /// [`Hash::lookup`] with the key's hash given.
    #[inline]
    pub fn lookup_with_hash(&self, key: &[u8], hash: u32) -> Result<Option<u64>, HashError> {
        self.check(key)?;
        Ok(self.t.lookup(key, hash).map(|(d, _)| d))
    }

    /// The key's position, as DPDK's `rte_hash_lookup`, if present.
    pub fn position(&self, key: &[u8]) -> Result<Option<u32>, HashError> {
        let hash = self.hash(key)?;
        Ok(self.t.lookup(key, hash).map(|(_, idx)| idx - 1))
    }

    /// Looks up 1 to [`LOOKUP_BULK_MAX`] keys at once: `data[i]` gets key i's data if it is
    /// present; returns which were, as bit i for key i.
    pub fn lookup_bulk(&self, keys: &[&[u8]], data: &mut [u64]) -> Result<u64, HashError> {
        self.bulk(keys, None, data.len(), |i, d, _| data[i] = d)
    }

    /// [`Hash::lookup_bulk`] with the keys' hashes given.
    pub fn lookup_bulk_with_hash(
        &self,
        keys: &[&[u8]],
        hashes: &[u32],
        data: &mut [u64],
    ) -> Result<u64, HashError> {
        self.bulk(keys, Some(hashes), data.len(), |i, d, _| data[i] = d)
    }

    /// [`Hash::lookup_bulk`] giving the keys' positions (as DPDK's `rte_hash_lookup_bulk`):
    /// `positions[i]` gets key i's position if it is present.
    pub fn lookup_bulk_positions(
        &self,
        keys: &[&[u8]],
        positions: &mut [u32],
    ) -> Result<u64, HashError> {
        self.bulk(keys, None, positions.len(), |i, _, idx| {
            positions[i] = idx - 1
        })
    }

    /// The bulk lookups: checks the keys (and `out_len` places for results), hashes them
    /// unless `given`, and hands each hit to `found`.
    #[inline(always)]
    fn bulk(
        &self,
        keys: &[&[u8]],
        given: Option<&[u32]>,
        out_len: usize,
        found: impl FnMut(usize, u64, u32),
    ) -> Result<u64, HashError> {
        let given_short = given.is_some_and(|h| h.len() < keys.len());
        if keys.is_empty() || keys.len() > LOOKUP_BULK_MAX || out_len < keys.len() || given_short {
            return Err(HashError::BulkSize {
                keys: keys.len(),
                data: out_len.min(given.map_or(out_len, <[u32]>::len)),
            });
        }
        let mut hashes = [0u32; LOOKUP_BULK_MAX];
        for (i, k) in keys.iter().enumerate() {
            hashes[i] = match given {
                Some(h) => {
                    self.check(k)?;
                    h[i]
                }
                None => self.hash(k)?,
            };
            // Fetched as each hash is known, so that the misses overlap the next keys' hashing.
            self.t.prefetch_buckets(hashes[i]);
        }
        Ok(self.t.lookup_bulk(keys, &hashes[..keys.len()], found))
    }

    /// Deletes `key`; returns its data if it was present.
    pub fn delete(&self, key: &[u8]) -> Result<Option<u64>, HashError> {
        self.writer().delete(key)
    }

    /// [`Hash::delete`] with the key's hash given.
    pub fn delete_with_hash(&self, key: &[u8], hash: u32) -> Result<Option<u64>, HashError> {
        self.writer().delete_with_hash(key, hash)
    }

    /// Deletes every key.
    pub fn reset(&self) {
        self.t.writer().reset()
    }

    /// Every key with its data and position, bucket by bucket (see [`Hash::iterate`]): a
    /// key added or moved meanwhile may be missed or seen twice.
    pub fn iter(&self) -> impl Iterator<Item = HashEntry> + '_ {
        let mut next = 0;
        std::iter::from_fn(move || self.iterate(&mut next))
    }

    /// The first entry at or after cursor `next`, which then moves past it; None at the end.
    /// As DPDK's `rte_hash_iterate`: start at 0; the cursor counts the entries of the main
    /// buckets (bucket `b`'s lanes are `8 * b` to `8 * b + 7`), then those of the
    /// extendable buckets, so `(next - 1) / 8` is the bucket of the entry returned.
    pub fn iterate(&self, next: &mut u32) -> Option<HashEntry> {
        let t = &self.t;
        let per = BUCKET_ENTRIES as u32;
        let end = (t.geo.num_buckets + t.geo.ext_buckets) * per;
        while *next < end {
            let (b, lane) = (*next / per, (*next % per) as usize);
            *next += 1;
            let bucket = match b.checked_sub(t.geo.num_buckets) {
                None => t.bucket(b),
                Some(e) => t.ext_bucket(e)?,
            };
            if let Some(e) = self.read_slot(bucket.key_idx[lane].load(Ordering::Acquire)) {
                return Some(e);
            }
        }
        None
    }

    /// The entry in slot `idx`, if it holds a whole one.
    fn read_slot(&self, idx: u32) -> Option<HashEntry> {
        let slot = self.t.slot(idx)?;
        let version = slot.version.load(Ordering::Acquire);
        let mut key: Vec<u8> = slot
            .key
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        key.truncate(self.t.geo.key_len as usize);
        let data = slot.data.load(Ordering::Acquire);
        crate::sync::fence(Ordering::Acquire);
        (version & 1 == 0 && slot.version.load(Ordering::Relaxed) == version).then_some(HashEntry {
            key,
            data,
            position: idx - 1,
        })
    }
}

/// The group's writers' lock on a table, held by this thread ([`Hash::writer`]): its adds
/// and deletes do not take the lock each (a locked instruction, which also keeps the
/// next call's loads from starting before it). Every other writer of the group waits
/// while it is held: hold it for a burst of changes, not for good. Calls on the
/// [`Hash`](struct@Hash) from this thread meanwhile nest in it. A process killed holding
/// it leaves the table to the next writer's repair, as one killed inside a single add does.
pub struct HashWriter<'a> {
    hash: &'a Hash,
    w: write::Writer<'a>,
}

impl HashWriter<'_> {
    /// [`Hash::add`], under this writer.
    pub fn add(&self, key: &[u8], data: u64) -> Result<u32, HashError> {
        let hash = self.hash.hash(key)?;
        self.add_with_hash(key, hash, data)
    }

    /// [`Hash::add_with_hash`], under this writer.
    pub fn add_with_hash(&self, key: &[u8], hash: u32, data: u64) -> Result<u32, HashError> {
        self.hash.check(key)?;
        self.w.add(key, hash, data).map(|idx| idx - 1)
    }

    /// [`Hash::delete`], under this writer.
    pub fn delete(&self, key: &[u8]) -> Result<Option<u64>, HashError> {
        let hash = self.hash.hash(key)?;
        self.delete_with_hash(key, hash)
    }

    /// [`Hash::delete_with_hash`], under this writer.
    pub fn delete_with_hash(&self, key: &[u8], hash: u32) -> Result<Option<u64>, HashError> {
        self.hash.check(key)?;
        Ok(self.w.delete(key, hash))
    }
}

/// A key of a table, as [`Hash::iter`] gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashEntry {
    /// The key.
    pub key: Vec<u8>,
    /// Its data.
    pub data: u64,
    /// Its position (0 to capacity - 1), as [`Hash::add`] returned it.
    pub position: u32,
}

#[cfg(test)]
mod tests;

#[cfg(all(test, loom))]
mod loom_model;
