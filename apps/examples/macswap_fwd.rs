//! A forwarding app of your own on this stack, in one file: the EAL, a pool of mbufs, two
//! ports, and a loop that receives a burst on one port, swaps each frame's MAC addresses
//! and sends it out of the other, on a worker lcore, until enough packets went through.
//!
//! ```text
//! cargo run --release -p rpmd-apps --example macswap_fwd -- \
//!     -l 0-1 --no-huge -m 256 --vdev net_null0 --vdev net_null1 -- 1000000
//! ```
//! Any two ports do: `net_tap` interfaces, virtio-net or 82599 devices bound to vfio-pci.

use net::mbuf::{DEFAULT_DATAROOM, DEFAULT_HEADROOM};
use net::{ether, Mbuf, PktmbufPool, PortConf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BURST: usize = 32;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        if let Ok(eal) = eal::eal() {
            eal.cleanup();
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    // EAL options (DPDK's names) before `--`, ours after it: how many packets to forward.
    let (eal, app) = eal::init(&args)?;
    let packets: u64 = app.get(1).map_or(Ok(1_000_000), |n| n.parse())?;
    drivers::register_all();
    let ports = net::init()?;
    let [a, b] = ports.as_slice() else {
        return Err(format!("give two ports (--vdev or -a), not {}", ports.len()).into());
    };
    let pool = PktmbufPool::create("fwd_pool", 8191, 256, DEFAULT_HEADROOM, DEFAULT_DATAROOM)?;
    for port in [a, b] {
        port.configure(1, 1, PortConf::default())?;
        port.rx_queue_setup(0, 1024, &pool)?;
        port.tx_queue_setup(0, 1024)?;
        port.start()?;
        port.wait_link_up(Duration::from_secs(5))?;
    }
    let worker = eal
        .lcores()
        .workers()
        .next()
        .ok_or("give a worker lcore too, e.g. -l 0-1")?;
    // Queue handles are owned: the worker takes them, and no other thread can poll them.
    let (from, to) = (a.rx_queue(0)?, b.tx_queue(0)?);
    let sent = Arc::new(AtomicU64::new(0));
    let count = sent.clone();
    // Worker lcores run functions returning an int, as DPDK's rte_eal_remote_launch.
    let worker = eal.remote_launch(worker, move || {
        count.store(forward(from, to, packets), Ordering::Relaxed);
        0
    })?;
    worker.wait();
    let sent = sent.load(Ordering::Relaxed);
    println!("forwarded {sent} packets from {} to {}", a.name(), b.name());
    for port in [a, b] {
        port.stop()?;
    }
    eal.cleanup();
    Ok(())
}

/// Receives, swaps the MAC addresses, sends; frames the port does not take are dropped
/// (their mbufs go back to the pool when the vector is cleared).
fn forward(mut rx: net::RxQueue, mut tx: net::TxQueue, packets: u64) -> u64 {
    let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST);
    let mut sent = 0;
    while sent < packets {
        if rx.rx_burst(&mut burst, BURST) == 0 {
            continue;
        }
        for m in burst.iter_mut() {
            ether::swap_addrs(m.data_mut());
        }
        sent += tx.tx_burst(&mut burst) as u64;
        burst.clear();
    }
    sent
}
