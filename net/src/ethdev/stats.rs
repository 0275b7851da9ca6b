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
        s.rx_nombuf = r
            .rx_nombuf
            .load(Ordering::Relaxed)
            .wrapping_sub(r.rx_nombuf_base.load(Ordering::Relaxed));
        s
    }

    /// Zeroes the statistics as seen from every process (the pollers' counters are left
    /// alone; the current values become the new base).
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
    }

    /// Zeroes the statistics and the driver's counters, as seen from every process.
    pub fn xstats_reset(&self) {
        self.stats_reset();
        self.inner.drv.xstats_reset();
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
