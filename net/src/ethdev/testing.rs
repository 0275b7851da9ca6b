//! Test doubles for the port layer's unit tests: a port record on the heap and a port
//! driven by a scripted driver, with no EAL and no hugepages.

use super::port::PortInner;
use super::{
    DevInfo, Direction, Error, Link, Port, PortDriver, PortRecord, PortState, Result, RxBurst,
    TxBurst,
};
use crate::mbuf::Mbuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A zeroed port record (an unused slot), leaked: it lives as long as the test process,
/// as a record in a memzone lives as long as the group.
pub(super) fn record() -> &'static PortRecord {
    let layout = std::alloc::Layout::new::<PortRecord>();
    // SAFETY: the layout is PortRecord's (not zero-sized); zero bytes are a valid record,
    // every field being an atomic, a byte array or a name (see `PortRecord::reset`).
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut PortRecord;
    assert!(!p.is_null(), "out of memory");
    // SAFETY: just allocated, zeroed and never freed.
    unsafe { &*p }
}

/// A record configured with `nb_rxq` RX and `nb_txq` TX queues.
pub(super) fn configured(nb_rxq: u16, nb_txq: u16) -> &'static PortRecord {
    let rec = record();
    rec.nb_rxq.store(nb_rxq as u32, Ordering::Release);
    rec.nb_txq.store(nb_txq as u32, Ordering::Release);
    rec.set_state(PortState::Configured);
    rec
}

/// What the fake driver was asked, for the tests to check, and how much its TX queues
/// send.
#[derive(Default)]
pub(super) struct Calls {
    pub(super) rx_bursts: AtomicUsize,
    pub(super) tx_bursts: AtomicUsize,
    /// How many packets a TX burst takes, at most, from the front (as drivers take them).
    pub(super) tx_take: AtomicUsize,
    pub(super) recovered: Mutex<Vec<(Direction, u16)>>,
    /// The device's missed frames (`rx_missed`), zeroed by `xstats_reset`.
    pub(super) missed: AtomicU64,
}

/// A driver whose queues receive nothing and send what [`Calls::tx_take`] says, and whose
/// TX queue `fail_tx` cannot be opened.
pub(super) struct FakeDriver {
    pub(super) calls: Arc<Calls>,
    pub(super) fail_tx: Option<u16>,
    pub(super) mbufs: u32,
}

struct FakeRx(Arc<Calls>);
struct FakeTx(Arc<Calls>);

impl RxBurst for FakeRx {
    fn rx_burst(&mut self, _out: &mut Vec<Mbuf>, _max: usize) -> usize {
        self.0.rx_bursts.fetch_add(1, Ordering::Relaxed);
        0
    }
}

impl TxBurst for FakeTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        self.0.tx_bursts.fetch_add(1, Ordering::Relaxed);
        let n = self.0.tx_take.load(Ordering::Relaxed).min(pkts.len());
        pkts.drain(..n);
        n
    }
}

impl PortDriver for FakeDriver {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_fake",
            max_rx_queues: 4,
            max_tx_queues: 4,
            min_mtu: 68,
            max_mtu: 9000,
            if_name: None,
            tx_offload_capa: Default::default(),
        }
    }
    fn link_update(&self) -> Link {
        Link::DOWN
    }
    fn xstats(&self) -> Vec<(String, u64)> {
        vec![("fake_counter".to_string(), 42)]
    }
    fn xstats_reset(&self) {
        self.calls.missed.store(0, Ordering::Relaxed);
    }
    fn rx_missed(&self) -> u64 {
        self.calls.missed.load(Ordering::Relaxed)
    }
    fn rx_queue(&self, _q: u16) -> Result<Box<dyn RxBurst>> {
        Ok(Box::new(FakeRx(self.calls.clone())))
    }
    fn tx_queue(&self, q: u16) -> Result<Box<dyn TxBurst>> {
        if self.fail_tx == Some(q) {
            return Err(Error::Device {
                port: "fake".into(),
                what: format!("TX queue {q} fails"),
            });
        }
        Ok(Box::new(FakeTx(self.calls.clone())))
    }
    fn queue_mbufs(&self, _dir: Direction, _q: u16) -> u32 {
        self.mbufs
    }
    fn recover_queue(&self, dir: Direction, q: u16) {
        self.calls.recovered.lock().unwrap().push((dir, q));
    }
}

/// Port 7 on `rec`, driven by a [`FakeDriver`] that reports to the returned calls.
pub(super) fn port(rec: &'static PortRecord) -> (Port, Arc<Calls>) {
    port_failing_tx(rec, None)
}

/// As [`port`], with TX queue `fail_tx` refusing to open.
pub(super) fn port_failing_tx(
    rec: &'static PortRecord,
    fail_tx: Option<u16>,
) -> (Port, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let drv = FakeDriver {
        calls: calls.clone(),
        fail_tx,
        mbufs: 5,
    };
    let port = Port {
        inner: Arc::new(PortInner {
            id: 7,
            rec,
            drv: Box::new(drv),
            driver_name: "net_fake",
        }),
    };
    (port, calls)
}

/// The pid of a process that has exited and been waited for.
pub(super) fn dead_pid() -> i32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("run true");
    let pid = child.id() as i32;
    child.wait().expect("wait for true");
    pid
}
