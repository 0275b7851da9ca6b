//! Queue handles: an RX or TX queue taken by this process for polling, its bursts (which
//! count, mark the burst for a stop and feed a capture) and its release on drop.

use super::counters::QueueCounters;
use super::{Direction, Port, PortDriver, PortState, Result, RxBurst, TxBurst};
use crate::capture::{Batch, CaptureSlot};
use crate::mbuf::Mbuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Who polls a queue: the process, and the lcore once it has polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePoller {
    /// The polling process.
    pub pid: i32,
    /// The lcore whose thread polls it; `None` before its first burst or off any lcore.
    pub lcore: Option<u32>,
}

impl Port {
    /// How many mbufs queue `q` holds now: armed for receiving (RX), or sent and not yet
    /// freed (TX; a chain of segments counts once). 0 while the port is not started.
    pub fn queue_mbufs(&self, dir: Direction, q: u16) -> Result<u32> {
        self.check_queue(q, dir == Direction::Rx)?;
        if self.state() != PortState::Started {
            return Ok(0);
        }
        Ok(self.inner.drv.queue_mbufs(dir, q))
    }

    /// How many packets TX queue `q` took since [`TxQueue::tx_mark`] said `mark`: settles
    /// the burst of a poller that died (or left) inside it. Only while nobody polls `q`, after
    /// taking it over; `None` when the driver cannot tell.
    pub fn tx_taken_since(&self, q: u16, mark: u32) -> Result<Option<u32>> {
        self.check_queue(q, false)?;
        Ok(self.inner.drv.tx_taken_since(q, mark))
    }

    /// The live process polling queue `q` of direction `dir`, if one does.
    pub fn queue_poller(&self, dir: Direction, q: u16) -> Option<QueuePoller> {
        self.check_queue(q, dir == Direction::Rx).ok()?;
        let pid = self.queue_owners(dir)[q as usize].live_holder()?;
        let lcore = self.poller_lcore(dir, q).load(Ordering::Relaxed);
        Some(QueuePoller {
            pid,
            lcore: lcore.checked_sub(1),
        })
    }

    pub(super) fn poller_lcore(&self, dir: Direction, q: u16) -> &'static AtomicU32 {
        let rec = self.inner.rec;
        match dir {
            Direction::Rx => &rec.rx_lcore[q as usize],
            Direction::Tx => &rec.tx_lcore[q as usize],
        }
    }

    /// Claims queue `q` in the record, then opens this process's handle to it; the claim
    /// is given back if opening fails.
    fn take_queue<T>(
        &self,
        q: u16,
        rx: bool,
        open: impl FnOnce(&dyn PortDriver) -> Result<T>,
    ) -> Result<T> {
        self.claim(q, rx)?;
        let dir = if rx { Direction::Rx } else { Direction::Tx };
        self.poller_lcore(dir, q).store(0, Ordering::Relaxed);
        open(self.inner.drv.as_ref()).inspect_err(|_| self.release(q, rx))
    }

    /// Takes RX queue `q` for polling by this process (until the handle drops).
    pub fn rx_queue(&self, q: u16) -> Result<RxQueue> {
        let burst = self.take_queue(q, true, |d| d.rx_queue(q))?;
        let rec = self.inner.rec;
        Ok(RxQueue {
            port: self.clone(),
            q,
            burst,
            counters: &rec.rx[q as usize],
            state: &rec.state,
            capture: rec.capture_slot(q, Direction::Rx),
            lcore_unrecorded: true,
        })
    }

    /// Takes TX queue `q` for this process (until the handle drops).
    pub fn tx_queue(&self, q: u16) -> Result<TxQueue> {
        let burst = self.take_queue(q, false, |d| d.tx_queue(q))?;
        let rec = self.inner.rec;
        Ok(TxQueue {
            port: self.clone(),
            q,
            burst,
            counters: &rec.tx[q as usize],
            state: &rec.state,
            capture: rec.capture_slot(q, Direction::Tx),
            lcore_unrecorded: true,
        })
    }
}

/// An RX queue taken by this process. Polling a port that is not started receives nothing.
pub struct RxQueue {
    port: Port,
    q: u16,
    burst: Box<dyn RxBurst>,
    counters: &'static QueueCounters,
    state: &'static AtomicU32,
    capture: &'static CaptureSlot,
    /// Until the first burst, which records the polling lcore for tools.
    lcore_unrecorded: bool,
}

impl RxQueue {
    /// Appends up to `max` received packets to `out`; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if self.lcore_unrecorded {
            self.lcore_unrecorded = false;
            record_lcore(&self.port, Direction::Rx, self.q);
        }
        if !self.counters.enter_burst(self.state) {
            return 0;
        }
        let start = out.len();
        let n = self.burst.rx_burst(out, max);
        if n > 0 {
            let bytes: u64 = out[start..].iter().map(|m| m.pkt_len() as u64).sum();
            self.counters.add(n as u64, bytes);
            if self.capture.armed() {
                let port = self.port.id();
                Batch::copy(self.capture, &out[start..], port, self.q, Direction::Rx).commit(n);
            }
        }
        self.counters.leave_burst();
        if n > 0 {
            eal::fault_point!("ethdev.rx_burst.returned");
        }
        n
    }
    /// The port of the queue.
    pub fn port(&self) -> &Port {
        &self.port
    }
    /// The queue's id on its port.
    pub fn queue_id(&self) -> u16 {
        self.q
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        self.port.release(self.q, true);
    }
}

/// A TX queue taken by this process.
pub struct TxQueue {
    port: Port,
    q: u16,
    burst: Box<dyn TxBurst>,
    counters: &'static QueueCounters,
    state: &'static AtomicU32,
    capture: &'static CaptureSlot,
    /// Until the first burst, which records the polling lcore for tools.
    lcore_unrecorded: bool,
}

impl TxQueue {
    /// Sends packets from the front of `pkts`; those sent leave the vector, the rest stay
    /// for the caller to retry or drop. Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if self.lcore_unrecorded {
            self.lcore_unrecorded = false;
            record_lcore(&self.port, Direction::Tx, self.q);
        }
        if pkts.is_empty() || !self.counters.enter_burst(self.state) {
            return 0;
        }
        // Lengths are read before the driver takes the packets: one it took may already be
        // freed or in another process. The bytes sent are those of all less those of the
        // packets it left, which are walked again only when it did not take them all.
        let bytes_before: u64 = pkts.iter().map(|m| m.pkt_len() as u64).sum();
        // Copies are made before the driver takes the packets; only those of the packets
        // it sent reach the capture.
        let copies = self
            .capture
            .armed()
            .then(|| Batch::copy(self.capture, pkts, self.port.id(), self.q, Direction::Tx));
        let n = self.burst.tx_burst(pkts);
        if let Some(c) = copies {
            c.commit(n);
        }
        if n > 0 {
            let bytes_left: u64 = pkts.iter().map(|m| m.pkt_len() as u64).sum();
            self.counters.add(n as u64, bytes_before - bytes_left);
        }
        self.counters.leave_burst();
        n
    }

    /// Where the queue stands before a burst, for [`Port::tx_taken_since`]; `None` when its
    /// driver cannot tell.
    #[inline]
    pub fn tx_mark(&self) -> Option<u32> {
        self.burst.tx_mark()
    }

    /// Frees the packets the device has finished sending, as DPDK's
    /// `rte_eth_tx_done_cleanup` (bursts do it as they go); returns how many it still
    /// holds. A stopped port holds none: stopping it freed them.
    pub fn done_cleanup(&mut self) -> usize {
        if !self.counters.enter_burst(self.state) {
            return 0;
        }
        let held = self.burst.done_cleanup();
        self.counters.leave_burst();
        held
    }

    /// Waits until the device has sent all this queue was given, at most `timeout`,
    /// freeing it; returns how many packets it still holds (0: all back in their pools).
    /// For a poller that leaves (or takes over from one that died) without sending more.
    pub fn wait_sent(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let held = self.done_cleanup();
            if held == 0 || Instant::now() >= deadline {
                return held;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The port of the queue.
    pub fn port(&self) -> &Port {
        &self.port
    }
    /// The queue's id on its port.
    pub fn queue_id(&self) -> u16 {
        self.q
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        self.port.release(self.q, false);
    }
}

/// Records the calling thread's lcore as the poller of a queue (once per handle).
#[cold]
fn record_lcore(port: &Port, dir: Direction, q: u16) {
    let lcore = eal::lcore::current().map_or(0, |l| l + 1);
    port.poller_lcore(dir, q).store(lcore, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethdev::{testing, Error};
    use crate::mbuf::MbufHeader;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_queue_has_one_poller_until_its_handle_drops() {
        let rec = testing::configured(2, 2);
        let (port, _) = testing::port(rec);
        let me = eal::own_pid();
        let rx = port.rx_queue(1).expect("a free queue");
        assert_eq!(rx.queue_id(), 1);
        assert_eq!(rec.rx_owner[1].load(), me);
        match port.rx_queue(1) {
            Err(Error::QueueBusy {
                what: "RX",
                queue: 1,
                pid,
                ..
            }) => assert_eq!(pid, me),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("taken twice"),
        }
        // The TX queue of the same id is another queue.
        let tx = port.tx_queue(1).expect("a free TX queue");
        drop(rx);
        assert_eq!(rec.rx_owner[1].load(), 0);
        assert_eq!(rec.tx_owner[1].load(), me);
        drop(tx);
        assert_eq!(rec.tx_owner[1].load(), 0);
        assert!(port.rx_queue(1).is_ok());
    }

    #[test]
    fn a_queue_that_does_not_open_is_given_back() {
        let rec = testing::configured(1, 2);
        let (port, _) = testing::port_failing_tx(rec, Some(1));
        for _ in 0..2 {
            match port.tx_queue(1) {
                Err(Error::Device { .. }) => {}
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("the driver refuses it"),
            }
            assert_eq!(rec.tx_owner[1].load(), 0);
        }
        assert!(port.tx_queue(2).is_err(), "no such queue");
        assert!(port.tx_queue(0).is_ok());
    }

    #[test]
    fn bursts_reach_the_driver_only_while_the_port_is_started() {
        let rec = testing::configured(1, 1);
        let (port, calls) = testing::port(rec);
        let mut rx = port.rx_queue(0).unwrap();
        let mut tx = port.tx_queue(0).unwrap();
        let mut pkts = Vec::new();
        assert_eq!(rx.rx_burst(&mut pkts, 32), 0);
        assert_eq!(calls.rx_bursts.load(Ordering::Relaxed), 0);
        rec.set_state(PortState::Started);
        assert_eq!(rx.rx_burst(&mut pkts, 32), 0);
        assert_eq!(calls.rx_bursts.load(Ordering::Relaxed), 1);
        assert_eq!(rec.rx[0].in_burst.load(Ordering::Relaxed), 0);
        assert_eq!(rec.rx[0].snapshot(), [0, 0, 0]);
        // Nothing to send: the driver is not called.
        assert_eq!(tx.tx_burst(&mut pkts), 0);
        assert_eq!(calls.tx_bursts.load(Ordering::Relaxed), 0);
        assert_eq!(tx.done_cleanup(), 0);
        assert_eq!(rec.tx[0].in_burst.load(Ordering::Relaxed), 0);
        assert_eq!(tx.tx_mark(), None, "the fake cannot tell");
    }

    #[test]
    fn tx_counts_the_bytes_of_the_packets_the_driver_took_only() {
        let rec = testing::configured(1, 1);
        let (port, calls) = testing::port(rec);
        rec.set_state(PortState::Started);
        let mut tx = port.tx_queue(0).unwrap();
        let mut headers = [60, 70, 80, 90, 100].map(MbufHeader::without_pool);
        let mut pkts: Vec<Mbuf> = headers
            .iter_mut()
            // SAFETY: a header of our own, one mbuf on each; the headers outlive the mbufs.
            .map(|h| unsafe { Mbuf::from_addr(h as *mut MbufHeader as usize) })
            .collect();
        let sent = |port: &Port| {
            let s = port.stats();
            (s.opackets, s.obytes)
        };
        assert_eq!(tx.tx_burst(&mut pkts), 0, "the driver takes none");
        assert_eq!(sent(&port), (0, 0));
        calls.tx_take.store(2, Ordering::Relaxed);
        assert_eq!(tx.tx_burst(&mut pkts), 2);
        assert_eq!(sent(&port), (2, 60 + 70));
        let left: Vec<u32> = pkts.iter().map(Mbuf::pkt_len).collect();
        assert_eq!(left, [80, 90, 100], "the rest stay, in order");
        calls.tx_take.store(5, Ordering::Relaxed);
        assert_eq!(tx.tx_burst(&mut pkts), 3);
        assert_eq!(sent(&port), (5, 400));
        assert!(pkts.is_empty());
    }

    #[test]
    fn queue_mbufs_asks_the_driver_only_while_started() {
        let rec = testing::configured(1, 1);
        let (port, _) = testing::port(rec);
        assert_eq!(port.queue_mbufs(Direction::Rx, 0).unwrap(), 0);
        rec.set_state(PortState::Started);
        assert_eq!(port.queue_mbufs(Direction::Rx, 0).unwrap(), 5);
        assert_eq!(port.queue_mbufs(Direction::Tx, 0).unwrap(), 5);
        assert!(port.queue_mbufs(Direction::Tx, 1).is_err());
        assert_eq!(port.tx_taken_since(0, 0).unwrap(), None);
    }
}
