//! `net_ring`: a port made of rings in shared memory, so any process of the group can
//! feed its RX queues and drain its TX queues.
//!
//! RX queue `q` of port `NAME` reads ring `NAME_rx<q>`; TX queue `q` writes ring
//! `NAME_tx<q>`. Both are rings of mbufs (`net::mbuf_ring::MbufRing`). (DPDK's `net_ring`
//! by default loops TX back to RX in one ring; separate rings let a test or another app
//! sit on either side.)

use eal::ring::RingFlags;
use net::ethdev::{
    DevInfo, DeviceRecord, Direction, Driver, Error, PortContext, PortDriver, Result, RxBurst,
    TxBurst,
};
use net::mbuf_ring::MbufRing;
use net::{Link, Mbuf, PktmbufPool};

/// The `net_ring` driver.
pub struct RingDriver;

/// Longest port name: ring names have 28 bytes, less `_rx` and a queue number.
const MAX_NAME: usize = 22;

/// Name of the ring behind RX (`dir` = "rx") or TX ("tx") queue `q` of port `port`.
pub fn ring_name(port: &str, dir: &str, q: u16) -> String {
    format!("{port}_{dir}{q}")
}

struct RingPort {
    name: String,
    port_id: u16,
    rec: DeviceRecord,
}

impl Driver for RingDriver {
    fn name(&self) -> &'static str {
        "net_ring"
    }
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &[])?;
        if ctx.name.len() > MAX_NAME {
            return Err(Error::BadArg {
                port: ctx.name.into(),
                why: format!("net_ring port names have at most {MAX_NAME} bytes"),
            });
        }
        self.attach(ctx)
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        Ok(Box::new(RingPort {
            name: ctx.name.into(),
            port_id: ctx.port_id,
            rec: ctx.record,
        }))
    }
}

impl RingPort {
    fn setup_ring(&self, dir: &str, q: u16, nb_desc: u32) -> Result<()> {
        let name = ring_name(&self.name, dir, q);
        if MbufRing::lookup(&name).is_ok() {
            return Ok(());
        }
        let size = (nb_desc.max(2) + 1).next_power_of_two();
        MbufRing::create(&name, size, RingFlags::empty())
            .map(drop)
            .map_err(Error::from)
    }
    fn ring(&self, dir: &str, q: u16) -> Result<MbufRing> {
        MbufRing::lookup(&ring_name(&self.name, dir, q)).map_err(Error::from)
    }
}

impl PortDriver for RingPort {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_ring",
            max_rx_queues: 16,
            max_tx_queues: 16,
            min_mtu: 68,
            max_mtu: 9000,
            if_name: None,
            tx_offload_capa: Default::default(),
        }
    }
    fn rx_queue_setup(&self, q: u16, nb_desc: u32, _pool: &PktmbufPool) -> Result<()> {
        self.setup_ring("rx", q, nb_desc)
    }
    fn tx_queue_setup(&self, q: u16, nb_desc: u32) -> Result<()> {
        self.setup_ring("tx", q, nb_desc)
    }
    fn link_update(&self) -> Link {
        crate::software_link(&self.rec)
    }
    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        Ok(Box::new(RingRx {
            ring: self.ring("rx", q)?,
            port_id: self.port_id,
        }))
    }
    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        Ok(Box::new(RingTx {
            ring: self.ring("tx", q)?,
        }))
    }
    /// The queue's poller is the only consumer of an RX ring and the only producer of a TX
    /// ring: one that died between claiming entries and publishing its move would block
    /// the next for good. An RX claim is given back (the next poller receives those
    /// frames); a TX claim is dropped unpublished (the frames of that burst stay in use).
    fn recover_queue(&self, dir: Direction, q: u16) {
        let side = dir.lowercase();
        let abandoned = self.ring(side, q).map(|r| match dir {
            Direction::Rx => r.abandon_dequeue_claims(),
            Direction::Tx => r.abandon_enqueue_claims(),
        });
        match abandoned {
            Ok(0) => {}
            Ok(n) => log::warn!(
                "{}: {side} ring {q}: gave up {n} entries its dead poller had claimed",
                self.name
            ),
            Err(e) => log::warn!("{}: {side} ring {q}: {e}", self.name),
        }
    }
    /// The TX ring's producer tail moves once per burst, when the burst is published.
    fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        let ring = self.ring("tx", q).ok()?;
        Some(ring.enqueued_count().wrapping_sub(mark))
    }
}

/// An RX queue: its ring's mbufs, at most `net::mbuf_ring::MAX_BURST` (64) a burst.
struct RingRx {
    ring: MbufRing,
    port_id: u16,
}

impl RxBurst for RingRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let port = self.port_id;
        self.ring.dequeue_burst(max, |mut m| {
            m.set_port(port);
            out.push(m);
        })
    }
}

struct RingTx {
    ring: MbufRing,
}

impl TxBurst for RingTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        self.ring.enqueue_burst(pkts)
    }
    fn tx_mark(&self) -> Option<u32> {
        Some(self.ring.enqueued_count())
    }
}
