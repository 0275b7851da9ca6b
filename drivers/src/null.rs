//! `net_null`: receives as many packets as asked for (of `size` bytes, default 64, cut to
//! the pool's data room; contents as the buffer held them) and drops what it is given to
//! send. For benchmarks of everything above the driver.

use net::ethdev::{
    DevInfo, DeviceRecord, Direction, Driver, Error, PortContext, PortDriver, Result, RxBurst,
    TakenCounter, TxBurst,
};
use net::{Link, Mbuf, PktmbufPool};
use std::sync::atomic::Ordering;

/// The `net_null` driver.
pub struct NullDriver;

struct NullPort {
    size: u16,
    port_id: u16,
    rec: DeviceRecord,
}

impl Driver for NullDriver {
    fn name(&self) -> &'static str {
        "net_null"
    }
    fn probe(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        crate::check_args(ctx.name, ctx.args, &["size"])?;
        let size = match crate::arg(ctx.args, "size") {
            None => 64,
            Some(s) => s
                .parse::<u16>()
                .ok()
                .filter(|v| (14..=9000).contains(v))
                .ok_or_else(|| Error::BadArg {
                    port: ctx.name.into(),
                    why: format!("size={s}: give a packet size from 14 to 9000"),
                })?,
        };
        // Secondaries attach without the vdev arguments: the size lives in the record.
        ctx.record.drv_data(0).store(size as u64, Ordering::Relaxed);
        self.attach(ctx)
    }
    fn attach(&self, ctx: &PortContext) -> Result<Box<dyn PortDriver>> {
        let size = ctx.record.drv_data(0).load(Ordering::Relaxed) as u16;
        Ok(Box::new(NullPort {
            size,
            port_id: ctx.port_id,
            rec: ctx.record,
        }))
    }
}

impl PortDriver for NullPort {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_null",
            max_rx_queues: 16,
            max_tx_queues: 16,
            min_mtu: 68,
            max_mtu: 9000,
            if_name: None,
            tx_offload_capa: Default::default(),
        }
    }
    fn link_update(&self) -> Link {
        crate::software_link(&self.rec)
    }
    fn rx_queue(&self, q: u16) -> Result<Box<dyn RxBurst>> {
        let pool = self.rec.rx_pool(q).ok_or_else(|| Error::NotSetUp {
            port: format!("port {}", self.port_id),
            dir: "RX",
            queue: q,
            call: "rx_queue_setup",
        })?;
        Ok(Box::new(NullRx {
            pool,
            size: self.size,
            port_id: self.port_id,
            rec: self.rec,
        }))
    }
    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        Ok(Box::new(NullTx(self.rec.tx_taken(q))))
    }
    fn tx_taken_since(&self, q: u16, mark: u32) -> Option<u32> {
        Some(self.rec.tx_taken(q).since(mark))
    }
    fn recover_queue(&self, dir: Direction, q: u16) {
        self.rec.recover_taken(dir, q)
    }
}

struct NullRx {
    pool: PktmbufPool,
    size: u16,
    port_id: u16,
    rec: DeviceRecord,
}

impl RxBurst for NullRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let start = out.len();
        if !self.pool.alloc_bulk(out, max) {
            self.rec.count_rx_nombuf(max as u64);
            return 0;
        }
        for m in &mut out[start..] {
            // Fresh single segments: cut to the buffer when `size` is beyond it.
            m.set_received_len(self.size);
            m.set_port(self.port_id);
        }
        eal::store_point!("null.rx.fields");
        max
    }
}

struct NullTx(TakenCounter);

impl TxBurst for NullTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let n = pkts.len();
        self.0.free_taken(pkts, n);
        n
    }
    fn tx_mark(&self) -> Option<u32> {
        Some(self.0.mark())
    }
}
