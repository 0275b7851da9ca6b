//! A port's statistics: the generic counters from the queues' counters less their base at
//! the last reset, and the named ones (xstats) with the driver's own.

use super::{Port, QueueCounters};
use std::sync::atomic::{AtomicU64, Ordering};

/// Statistics of a port (since the last reset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the device dropped for want of RX descriptors.
    pub imissed: u64,
    /// Packets that could not be sent.
    pub oerrors: u64,
    /// RX refills that found the pool empty.
    pub rx_nombuf: u64,
    /// Packets received, per RX queue.
    pub q_ipackets: Vec<u64>,
    /// Packets sent, per TX queue.
    pub q_opackets: Vec<u64>,
    /// Bytes received, per RX queue.
    pub q_ibytes: Vec<u64>,
    /// Bytes sent, per TX queue.
    pub q_obytes: Vec<u64>,
}

impl Port {
    /// The port's counters, summed over every process's bursts and the device's own.
    pub fn stats(&self) -> Stats {
        let r = self.inner.rec;
        let mut s = Stats::default();
        let diff = |c: &QueueCounters, base: &[AtomicU64; 3]| {
            let now = c.snapshot();
            [0, 1, 2].map(|i| now[i].wrapping_sub(base[i].load(Ordering::Relaxed)))
        };
        for q in 0..self.nb_rx_queues() as usize {
            let [p, b, e] = diff(&r.rx[q], &r.rx_base[q]);
            s.ipackets += p;
            s.ibytes += b;
            s.imissed += e;
            s.q_ipackets.push(p);
            s.q_ibytes.push(b);
        }
        for q in 0..self.nb_tx_queues() as usize {
            let [p, b, e] = diff(&r.tx[q], &r.tx_base[q]);
            s.opackets += p;
            s.obytes += b;
            s.oerrors += e;
            s.q_opackets.push(p);
            s.q_obytes.push(b);
        }
        s.imissed += self.inner.drv.rx_missed();
        s.rx_nombuf = r
            .rx_nombuf
            .load(Ordering::Relaxed)
            .wrapping_sub(r.rx_nombuf_base.load(Ordering::Relaxed));
        s
    }

    /// Zeroes the statistics as seen from every process (the pollers' counters are left
    /// alone; the current values become the new base), the driver's counters included, as
    /// DPDK's drivers whose `imissed` is a device counter do.
    pub fn stats_reset(&self) {
        let r = self.inner.rec;
        for (c, base) in
            r.rx.iter()
                .zip(&r.rx_base)
                .chain(r.tx.iter().zip(&r.tx_base))
        {
            let now = c.snapshot();
            for i in 0..3 {
                base[i].store(now[i], Ordering::Relaxed);
            }
        }
        r.rx_nombuf_base
            .store(r.rx_nombuf.load(Ordering::Relaxed), Ordering::Relaxed);
        self.inner.drv.xstats_reset();
    }

    /// Zeroes the statistics and the driver's counters, as seen from every process: the
    /// same as [`stats_reset`](Self::stats_reset), under DPDK's other name.
    pub fn xstats_reset(&self) {
        self.stats_reset();
    }

    /// Named statistics: the generic ones, per queue, then the driver's own.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let s = self.stats();
        let mut v = vec![
            ("rx_good_packets".to_string(), s.ipackets),
            ("tx_good_packets".to_string(), s.opackets),
            ("rx_good_bytes".to_string(), s.ibytes),
            ("tx_good_bytes".to_string(), s.obytes),
            ("rx_missed_errors".to_string(), s.imissed),
            ("tx_errors".to_string(), s.oerrors),
            ("rx_mbuf_allocation_errors".to_string(), s.rx_nombuf),
        ];
        for (q, (p, b)) in s.q_ipackets.iter().zip(&s.q_ibytes).enumerate() {
            v.push((format!("rx_q{q}_packets"), *p));
            v.push((format!("rx_q{q}_bytes"), *b));
        }
        for (q, (p, b)) in s.q_opackets.iter().zip(&s.q_obytes).enumerate() {
            v.push((format!("tx_q{q}_packets"), *p));
            v.push((format!("tx_q{q}_bytes"), *b));
        }
        v.extend(self.inner.drv.xstats());
        v
    }
}

#[cfg(test)]
mod tests {
    use crate::ethdev::testing;
    use crate::ethdev::Stats;
    use std::sync::atomic::Ordering;

    #[test]
    fn stats_sum_the_configured_queues_and_the_devices_misses() {
        let rec = testing::configured(2, 1);
        let (port, calls) = testing::port(rec);
        rec.rx[0].add(10, 1000);
        rec.rx[0].errors.store(3, Ordering::Relaxed);
        calls.missed.store(4, Ordering::Relaxed);
        rec.rx[1].add(5, 500);
        rec.rx[2].add(100, 10_000); // not configured: not counted
        rec.tx[0].add(7, 700);
        rec.tx[0].errors.store(1, Ordering::Relaxed);
        rec.count_rx_nombuf(2);
        assert_eq!(
            port.stats(),
            Stats {
                ipackets: 15,
                opackets: 7,
                ibytes: 1500,
                obytes: 700,
                imissed: 7,
                oerrors: 1,
                rx_nombuf: 2,
                q_ipackets: vec![10, 5],
                q_opackets: vec![7],
                q_ibytes: vec![1000, 500],
                q_obytes: vec![700],
            }
        );
    }

    #[test]
    fn a_reset_moves_the_base_leaves_the_counters_and_resets_the_devices() {
        let rec = testing::configured(1, 1);
        let (port, calls) = testing::port(rec);
        rec.rx[0].add(10, 1000);
        rec.tx[0].add(4, 400);
        rec.count_rx_nombuf(6);
        calls.missed.store(5, Ordering::Relaxed);
        port.stats_reset();
        let zero = port.stats();
        assert_eq!(
            (zero.ipackets, zero.opackets, zero.rx_nombuf, zero.imissed),
            (0, 0, 0, 0)
        );
        assert_eq!(rec.rx[0].snapshot(), [10, 1000, 0], "the poller's counters");
        rec.rx[0].add(1, 60);
        rec.count_rx_nombuf(1);
        let s = port.stats();
        assert_eq!((s.ipackets, s.ibytes, s.rx_nombuf), (1, 60, 1));
        assert_eq!(s.q_ipackets, vec![1]);
    }

    #[test]
    fn xstats_list_generic_then_per_queue_then_the_drivers() {
        let rec = testing::configured(2, 1);
        let (port, _) = testing::port(rec);
        rec.rx[1].add(3, 300);
        let x = port.xstats();
        let names: Vec<&str> = x.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "rx_good_packets",
                "tx_good_packets",
                "rx_good_bytes",
                "tx_good_bytes",
                "rx_missed_errors",
                "tx_errors",
                "rx_mbuf_allocation_errors",
                "rx_q0_packets",
                "rx_q0_bytes",
                "rx_q1_packets",
                "rx_q1_bytes",
                "tx_q0_packets",
                "tx_q0_bytes",
                "fake_counter",
            ]
        );
        let get = |n: &str| x.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
        assert_eq!(get("rx_good_packets"), Some(3));
        assert_eq!(get("rx_q1_bytes"), Some(300));
        assert_eq!(get("fake_counter"), Some(42));
    }
}
