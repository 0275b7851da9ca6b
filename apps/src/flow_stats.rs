//! Per-flow packet and byte counters that every process of a group counts into: what
//! `symmetric_mp --flow-stats` keeps and `proc-info --show-hash symmetric_mp_flows` shows.
//!
//! Two shared objects, both made by the primary and found by name by the others:
//! - the hash table [`TABLE`] (`eal::hash`), keyed by a [`FlowKey`]; a key's position in
//!   the table (what [`Hash::add`] returns) indexes its counters;
//! - the memzone [`COUNTERS`]: a [`Counters`] pair per position, and one more after them
//!   for the packets of flows a full table could not take.
//!
//! A burst costs one [`Hash::lookup_bulk_positions`], which takes no lock, and atomic adds to the
//! counters: processes counting the same flow need no lock between them. Only a flow not
//! yet in the table takes the table's writer lock, once. Flows are never deleted, so a
//! position, once given, stays the flow's.
//!
//! A process killed while counting loses at most the counts of the burst in its hands (and
//! may have added some of its flows without their packets); the others' counts and the
//! table are untouched (the table repairs itself if the kill landed inside an add).

use eal::hash::{Hash, HashError, HashFunction, HashParams, LOOKUP_BULK_MAX};
use eal::shm::ShmSafe;
use net::Mbuf;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// The flow table's name.
pub const TABLE: &str = "symmetric_mp_flows";
/// The memzone of the counters.
pub const COUNTERS: &str = "symmetric_mp_flows_ctr";
/// Flows the table holds unless told otherwise.
pub const DEFAULT_ENTRIES: u32 = 1 << 16;

/// A flow's key: 16 bytes, so that the hash and the key comparison take two 8-byte words.
///
/// ```text
/// 0..4 source IPv4 address | 4..8 destination address | 8..10 source port
/// | 10..12 destination port | 12 IP protocol | 13 kind | 14..16 zero
/// ```
/// Addresses and ports in network order; ports are 0 for protocols without them (TCP, UDP
/// and SCTP have them) and for fragments (so that a datagram's fragments are one flow).
/// The kind is [`FlowKey::IPV4`], or [`FlowKey::OTHER`] for the one key that every other
/// frame counts under (all its other bytes zero): not IPv4, VLAN-tagged, or with its IPv4
/// header (and ports) not whole in the first segment. A new kind of flow gets a new kind
/// byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey(pub [u8; 16]);

impl FlowKey {
    /// The kind byte of an IPv4 5-tuple.
    pub const IPV4: u8 = 0;
    /// The kind byte of the key of every other frame.
    pub const OTHER: u8 = 1;

    /// The key frames that are not IPv4 count under.
    pub fn other() -> FlowKey {
        let mut k = [0u8; 16];
        k[13] = Self::OTHER;
        FlowKey(k)
    }

    /// The flow of an Ethernet frame (its first segment).
    pub fn of_frame(frame: &[u8]) -> FlowKey {
        Self::ipv4_of_frame(frame).unwrap_or_else(Self::other)
    }

    fn ipv4_of_frame(frame: &[u8]) -> Option<FlowKey> {
        if frame.get(12..14)? != [0x08, 0x00] {
            return None;
        }
        let ip = &frame[14..];
        let ihl = usize::from(*ip.first()? & 0x0f) * 4;
        if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
            return None;
        }
        let proto = ip[9];
        let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&ip[12..20]);
        if matches!(proto, 6 | 17 | 132) && !fragment {
            k[8..12].copy_from_slice(ip.get(ihl..ihl + 4)?);
        }
        k[12] = proto;
        k[13] = Self::IPV4;
        Some(FlowKey(k))
    }

    fn addr(&self, at: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3])
    }

    fn port(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.0[at], self.0[at + 1]])
    }

    fn is_ipv4(&self) -> bool {
        self.0[13] == Self::IPV4
    }

    /// The key's fields, for JSON output.
    pub fn to_json(&self) -> Value {
        if !self.is_ipv4() {
            return json!({ "flow": self.to_string() });
        }
        json!({
            "flow": self.to_string(),
            "src": self.addr(0).to_string(), "dst": self.addr(4).to_string(),
            "sport": self.port(8), "dport": self.port(10), "proto": self.0[12],
        })
    }
}

/// `10.0.0.1:1024 -> 10.0.0.2:5000 udp`, or `non-IPv4`.
impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if !self.is_ipv4() {
            return write!(f, "non-IPv4");
        }
        let (src, dst) = (self.addr(0), self.addr(4));
        let (sport, dport) = (self.port(8), self.port(10));
        match self.0[12] {
            6 => write!(f, "{src}:{sport} -> {dst}:{dport} tcp"),
            17 => write!(f, "{src}:{sport} -> {dst}:{dport} udp"),
            132 => write!(f, "{src}:{sport} -> {dst}:{dport} sctp"),
            1 => write!(f, "{src} -> {dst} icmp"),
            p => write!(f, "{src} -> {dst} proto {p}"),
        }
    }
}

/// One flow's counters, in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
}

// SAFETY: repr(C), two atomics.
unsafe impl ShmSafe for Counters {}

impl Counters {
    fn add(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// A flow and its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Its key.
    pub key: FlowKey,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted (whole frames, as the ports' byte counters).
    pub bytes: u64,
}

impl Flow {
    /// The flow as JSON: its key's fields and its counts.
    pub fn to_json(&self) -> Value {
        let mut v = self.key.to_json();
        v["packets"] = self.packets.into();
        v["bytes"] = self.bytes.into();
        v
    }
}

/// What the row of the flows a full table could not take says.
pub const UNTRACKED: &str = "untracked (the table was full)";

/// The heading of the rows [`flow_row`] prints.
pub const FLOW_HEADER: &str = "     packets          bytes  flow";

/// One line of a flow table.
pub fn flow_row(packets: u64, bytes: u64, flow: &str) -> String {
    format!("{packets:>12} {bytes:>14}  {flow}")
}

/// The flow table and its counters, as one process sees them.
pub struct FlowStats {
    table: Hash,
    /// One pair per table position, then the pair of what a full table could not take.
    counters: &'static [Counters],
    /// Whether this process has said the table is full.
    told_full: bool,
}

impl FlowStats {
    /// Creates the table for `entries` flows and its counters (the primary).
    pub fn create(entries: u32) -> Result<FlowStats, String> {
        let table = Hash::create(&HashParams {
            name: TABLE,
            entries,
            key_len: 16,
            function: HashFunction::Crc32c,
            init_val: 0,
            extendable: true,
        })
        .map_err(|e| format!("cannot create the flow table: {e}"))?;
        let len = (entries as u64 + 1) * std::mem::size_of::<Counters>() as u64;
        let eal = eal::eal().map_err(|e| e.to_string())?;
        eal.memzone_reserve(COUNTERS, len, 64, eal::MemzoneFlags::empty())
            .map_err(|e| format!("cannot reserve the flow counters ({len} bytes): {e}"))?;
        Self::with_table(table)
    }

    /// Finds the table and counters a primary created (the other processes, proc-info).
    pub fn open() -> Result<FlowStats, String> {
        Self::with_table(Hash::open(TABLE, 16).map_err(|e| e.to_string())?)
    }

    fn with_table(table: Hash) -> Result<FlowStats, String> {
        let zone = eal::eal()
            .and_then(|e| e.memzone_lookup(COUNTERS))
            .map_err(|e| format!("the flow table has no counters: {e}"))?;
        let pairs = table.capacity() as usize + 1;
        let size = std::mem::size_of::<Counters>();
        if (zone.len() as usize) < pairs * size {
            return Err(format!(
                "memzone {COUNTERS} holds {} bytes, fewer than {pairs} counter pairs: was it made by another build?",
                zone.len()
            ));
        }
        // SAFETY: the zone is 64-byte aligned and at least `pairs` Counters long (checked);
        // all zero is a valid Counters (atomics), which the reservation gave; it stays mapped
        // at this address for as long as the group lives, and Counters is only used through
        // atomics.
        let counters = unsafe { std::slice::from_raw_parts(zone.as_ptr::<Counters>(), pairs) };
        Ok(FlowStats {
            table,
            counters,
            told_full: false,
        })
    }

    /// The table.
    pub fn table(&self) -> &Hash {
        &self.table
    }

    /// Counts a burst: looks its flows up at once, adds those not yet in the table.
    pub fn count(&mut self, pkts: &[Mbuf]) {
        for burst in pkts.chunks(LOOKUP_BULK_MAX) {
            let mut keys = [[0u8; 16]; LOOKUP_BULK_MAX];
            for (k, m) in keys.iter_mut().zip(burst) {
                *k = FlowKey::of_frame(m.data()).0;
            }
            let mut refs: [&[u8]; LOOKUP_BULK_MAX] = [&[]; LOOKUP_BULK_MAX];
            for (r, k) in refs.iter_mut().zip(&keys) {
                *r = k;
            }
            let n = burst.len();
            let mut positions = [0u32; LOOKUP_BULK_MAX];
            // Cannot fail: the keys have the table's length and there are 1 to 64 of them.
            let hits = self
                .table
                .lookup_bulk_positions(&refs[..n], &mut positions[..n])
                .unwrap_or(0);
            // Runs of packets of one flow get one pair of atomic adds.
            let mut run: Option<(usize, u64, u64)> = None;
            for (i, m) in burst.iter().enumerate() {
                let at = if hits & (1 << i) != 0 {
                    positions[i] as usize
                } else {
                    self.position(&keys[i])
                };
                let len = u64::from(m.pkt_len());
                run = match run {
                    Some((p, packets, bytes)) if p == at => Some((p, packets + 1, bytes + len)),
                    Some((p, packets, bytes)) => {
                        self.pair(p).add(packets, bytes);
                        Some((at, 1, len))
                    }
                    None => Some((at, 1, len)),
                };
            }
            if let Some((p, packets, bytes)) = run {
                self.pair(p).add(packets, bytes);
            }
        }
    }

    /// The counters of position `at`; those of what a full table could not take for a
    /// position out of range (a table another binary wrote into).
    fn pair(&self, at: usize) -> &Counters {
        self.counters
            .get(at)
            .unwrap_or(&self.counters[self.counters.len() - 1])
    }

    /// The position of a flow the bulk lookup missed: added under the writer lock if no
    /// process has added it meanwhile (an add of a key present only gives its position).
    #[cold]
    fn position(&mut self, key: &[u8; 16]) -> usize {
        let untracked = self.counters.len() - 1;
        // A full table would refuse the add after taking the writer lock: spare the lock.
        if self.table.count() >= self.table.capacity() {
            if let Ok(Some(p)) = self.table.position(key) {
                return p as usize;
            }
            self.tell_full();
            return untracked;
        }
        match self.table.add(key, 0) {
            Ok(p) => p as usize,
            Err(HashError::Full { .. }) => {
                self.tell_full();
                untracked
            }
            Err(e) => {
                log::warn!("flow statistics: {e}");
                untracked
            }
        }
    }

    fn tell_full(&mut self) {
        if !self.told_full {
            self.told_full = true;
            log::warn!(
                "flow table '{TABLE}' is full ({} flows): new flows are counted together as untracked; give the primary a larger --flow-entries",
                self.table.capacity()
            );
        }
    }

    /// Every flow with its counts, most packets first (then most bytes, then by key).
    pub fn flows(&self) -> Vec<Flow> {
        let mut flows: Vec<Flow> = self
            .table
            .iter()
            .filter_map(|e| {
                let key = FlowKey(e.key.try_into().ok()?);
                let (packets, bytes) = self.pair(e.position as usize).read();
                Some(Flow {
                    key,
                    packets,
                    bytes,
                })
            })
            .collect();
        // A key that moved between buckets during the walk may come twice.
        flows.sort_unstable_by_key(|f| f.key);
        flows.dedup_by_key(|f| f.key);
        flows.sort_by(|a, b| (b.packets, b.bytes, a.key).cmp(&(a.packets, a.bytes, b.key)));
        flows
    }

    /// Packets and bytes of flows the table was too full to take.
    pub fn untracked(&self) -> (u64, u64) {
        self.counters[self.counters.len() - 1].read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 12..14 + 20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn keys_of_frames() {
        let k = FlowKey::of_frame(&udp(1024, 5000));
        assert_eq!(
            k.0,
            [10, 0, 0, 1, 10, 0, 0, 2, 0x04, 0x00, 0x13, 0x88, 17, 0, 0, 0]
        );
        assert_eq!(k.to_string(), "10.0.0.1:1024 -> 10.0.0.2:5000 udp");
        assert_eq!(k.to_json()["dport"], 5000);
        // A fragment: one flow for all of the datagram, ports unread.
        let mut frag = udp(1024, 5000);
        frag[14 + 6] = 0x20;
        assert_eq!(&FlowKey::of_frame(&frag).0[8..12], &[0; 4]);
        // Not IPv4, too short, a bad header length: the other flow.
        let mut arp = udp(1, 2);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut bad_ihl = udp(1, 2);
        bad_ihl[14] = 0x44;
        for f in [&arp[..], &udp(1, 2)[..20], &bad_ihl[..]] {
            assert_eq!(FlowKey::of_frame(f), FlowKey::other());
        }
        assert_eq!(FlowKey::other().to_string(), "non-IPv4");
        // Ports cut off: the other flow too.
        assert_eq!(FlowKey::of_frame(&udp(1, 2)[..36]), FlowKey::other());
    }
}
