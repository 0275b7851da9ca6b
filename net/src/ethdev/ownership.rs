//! Who polls a queue: claims (one poller a queue), release, and the repair of a queue
//! whose poller (or repairer) died, before anyone can take it again.

use super::registry::ports;
use super::{Direction, Error, Port, Result, MAX_QUEUES};
use eal::owner::{Claimed, OwnerWord};
use std::sync::atomic::Ordering;

pub(super) fn release_queues_of(pid: i32) {
    crate::capture::release_of(pid);
    for port in ports() {
        port.release_queues_of(pid);
    }
}

/// Settles what dead process `dead` (an owner word's value) left before its lcores'
/// caches are emptied (see `eal::before_emptying_dead_caches`): repairs its queues, then
/// frees the mbufs it held (ARCHITECTURE.md, "Holds").
pub(super) fn settle_dead(dead: i32) {
    repair_dead_queues(dead);
    crate::mbuf::reclaim_held_by(dead);
}

/// Repairs every queue of this process's ports that `dead` (an owner word's value) or
/// another dead process polled, and waits for those other processes repair: a dead
/// poller's lcore cache may hold mbufs its queue still names.
fn repair_dead_queues(dead: i32) {
    for port in ports() {
        for dir in [Direction::Rx, Direction::Tx] {
            for q in 0..MAX_QUEUES as u16 {
                port.repair_if_dead(dir, q, dead);
            }
        }
    }
}

impl Port {
    /// Refuses `what` while a live process (this one included) polls one of the queues.
    pub(crate) fn check_unpolled(&self, what: &'static str) -> Result<()> {
        let r = self.inner.rec;
        let owners = r.rx_owner.iter().map(|o| ("RX", o)).enumerate();
        let owners = owners.chain(r.tx_owner.iter().map(|o| ("TX", o)).enumerate());
        for (q, (dir, owner)) in owners {
            if let Some(pid) = owner.live_holder() {
                return Err(Error::Polled {
                    port: self.id(),
                    what,
                    dir,
                    queue: q as u16,
                    pid,
                });
            }
        }
        Ok(())
    }

    pub(super) fn claim(&self, q: u16, rx: bool) -> Result<()> {
        self.check_queue(q, rx)?;
        let dir = if rx { Direction::Rx } else { Direction::Tx };
        let owner = &self.queue_owners(dir)[q as usize];
        let what = if rx { "RX" } else { "TX" };
        // A poller (or repairer) that died before the primary noticed: repaired, then
        // taken. One poller a queue: this process polling it already is refused too.
        let me = eal::own_pid();
        let pid = match owner.claim(me, |dead| self.free_from_dead(dir, q, dead)) {
            Ok(Claimed::Now) => {
                eal::store_point!("queue.owner");
                if rx {
                    self.take_holds(q);
                }
                return Ok(());
            }
            Ok(Claimed::Already) => me,
            Err(holder) => holder,
        };
        Err(Error::QueueBusy {
            port: self.id(),
            what,
            queue: q,
            pid,
        })
    }

    pub(super) fn queue_owners(&self, dir: Direction) -> &'static [OwnerWord; MAX_QUEUES] {
        match dir {
            Direction::Rx => &self.inner.rec.rx_owner,
            Direction::Tx => &self.inner.rec.tx_owner,
        }
    }

    /// Frees the queues dead process `pid` polled (the primary, told it exited).
    fn release_queues_of(&self, pid: i32) {
        for dir in [Direction::Rx, Direction::Tx] {
            for q in 0..MAX_QUEUES as u16 {
                if self.free_from_dead(dir, q, pid) {
                    log::info!(
                        "released {dir} queue {q} of port '{}' polled by exited process {pid}",
                        self.name()
                    );
                }
            }
        }
    }

    /// Repairs queue `q` if its poller (or repairer) is `dead` or died; returns once nobody
    /// repairs it.
    fn repair_if_dead(&self, dir: Direction, q: u16, dead: i32) {
        self.queue_owners(dir)[q as usize].settle(dead, |cur| self.free_from_dead(dir, q, cur));
    }

    /// Frees queue `q` of dead owner `pid` (a poller, or minus a repairer), repaired (see
    /// `recover_dead_burst`) before anyone can claim it (see `OwnerWord::free_from_dead`).
    /// Returns whether this call did it.
    fn free_from_dead(&self, dir: Direction, q: u16, pid: i32) -> bool {
        let owner = &self.queue_owners(dir)[q as usize];
        owner.free_from_dead(pid, || {
            self.recover_dead_burst(dir, q, pid.saturating_abs());
            self.end_holds(dir, q);
        })
    }

    /// Ends every hold on the mbufs queue `q` names: they are the queue's, whoever polled
    /// it last (nobody polls it now).
    fn end_holds(&self, dir: Direction, q: u16) {
        self.inner.drv.for_each_queue_mbuf(dir, q, &mut |addr| {
            // SAFETY: the driver names mbufs of the queue's pools.
            unsafe { crate::mbuf::end_hold(addr) }
        });
    }

    /// Makes this process, RX queue `q`'s new poller, the holder of the buffers the queue
    /// has posted: a receive hands them out as they are (the poller's own refills were
    /// held from their allocation), so one inherited from the last poller must be held
    /// from now on, or a kill while it is in hand would lose it.
    fn take_holds(&self, q: u16) {
        self.inner
            .drv
            .for_each_queue_mbuf(Direction::Rx, q, &mut |addr| {
                // SAFETY: the driver names mbufs of the queue's pools; nobody else polls it.
                unsafe { crate::mbuf::take_hold(addr) }
            });
    }

    /// After queue `q` was taken from dead poller `pid`: if it died inside a burst, lowers
    /// the burst flag it left up (a stop would wait for the queue's next poller) and has
    /// the driver repair what store order alone cannot. What that burst held may stay in
    /// use.
    fn recover_dead_burst(&self, dir: Direction, q: u16, pid: i32) {
        let r = self.inner.rec;
        let counters = match dir {
            Direction::Rx => &r.rx[q as usize],
            Direction::Tx => &r.tx[q as usize],
        };
        if counters.in_burst.swap(0, Ordering::AcqRel) != 0 {
            self.inner.drv.recover_queue(dir, q);
            log::warn!(
                "port {}: process {pid} died inside a burst on {dir} queue {q}: the queue goes on; the packets of that burst may stay in use",
                self.id()
            );
        }
    }

    pub(super) fn release(&self, q: u16, rx: bool) {
        let dir = if rx { Direction::Rx } else { Direction::Tx };
        // Still ours until released: what the queue names stops being held by us.
        self.end_holds(dir, q);
        self.queue_owners(dir)[q as usize].release(eal::own_pid());
        eal::store_point!("queue.owner");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethdev::testing;

    #[test]
    fn a_live_poller_blocks_what_needs_the_queues_unpolled() {
        let rec = testing::configured(1, 2);
        let (port, _) = testing::port(rec);
        assert!(port.check_unpolled("detach").is_ok());
        let tx = port.tx_queue(1).unwrap();
        match port.check_unpolled("detach") {
            Err(Error::Polled {
                what: "detach",
                dir: "TX",
                queue: 1,
                pid,
                ..
            }) => assert_eq!(pid, eal::own_pid()),
            r => panic!("{r:?}"),
        }
        drop(tx);
        assert!(port.check_unpolled("detach").is_ok());
        // A dead poller's queue does not block (claimed here in its name).
        let dead = testing::dead_pid();
        assert!(rec.rx_owner[0].claim(dead, |_| false).is_ok());
        assert!(port.check_unpolled("detach").is_ok());
    }

    #[test]
    fn a_claim_repairs_the_queue_of_a_poller_that_died_in_a_burst() {
        let rec = testing::configured(1, 1);
        let (port, calls) = testing::port(rec);
        let dead = testing::dead_pid();
        assert!(rec.rx_owner[0].claim(dead, |_| false).is_ok());
        rec.rx[0].in_burst.store(1, Ordering::Relaxed);
        let rx = port.rx_queue(0).expect("taken over from the dead poller");
        assert_eq!(rec.rx_owner[0].load(), eal::own_pid());
        assert_eq!(rec.rx[0].in_burst.load(Ordering::Relaxed), 0);
        assert_eq!(*calls.recovered.lock().unwrap(), [(Direction::Rx, 0)]);
        drop(rx);
    }

    #[test]
    fn an_exited_process_loses_its_queues_and_only_its_own() {
        let rec = testing::configured(2, 2);
        let (port, calls) = testing::port(rec);
        let dead = testing::dead_pid();
        let other = testing::dead_pid();
        assert!(rec.rx_owner[0].claim(dead, |_| false).is_ok());
        assert!(rec.tx_owner[1].claim(dead, |_| false).is_ok());
        assert!(rec.rx_owner[1].claim(other, |_| false).is_ok());
        let mine = port.tx_queue(0).unwrap();
        rec.tx[1].in_burst.store(1, Ordering::Relaxed);
        port.release_queues_of(dead);
        assert_eq!(rec.rx_owner[0].load(), 0);
        assert_eq!(rec.tx_owner[1].load(), 0);
        assert_eq!(rec.rx_owner[1].load(), other, "another process's queue");
        assert_eq!(rec.tx_owner[0].load(), eal::own_pid());
        // Only the queue left inside a burst goes to the driver's repair.
        assert_eq!(*calls.recovered.lock().unwrap(), [(Direction::Tx, 1)]);
        assert_eq!(rec.tx[1].in_burst.load(Ordering::Relaxed), 0);
        drop(mine);
    }

    #[test]
    fn repair_if_dead_settles_any_dead_holder_and_leaves_live_ones() {
        let rec = testing::configured(1, 1);
        let (port, calls) = testing::port(rec);
        let told = testing::dead_pid();
        let found = testing::dead_pid();
        assert!(rec.rx_owner[0].claim(found, |_| false).is_ok());
        port.repair_if_dead(Direction::Rx, 0, told);
        assert_eq!(rec.rx_owner[0].load(), 0);
        let tx = port.tx_queue(0).unwrap();
        port.repair_if_dead(Direction::Tx, 0, told);
        assert_eq!(rec.tx_owner[0].load(), eal::own_pid());
        assert!(
            calls.recovered.lock().unwrap().is_empty(),
            "no burst was cut"
        );
        drop(tx);
    }
}
