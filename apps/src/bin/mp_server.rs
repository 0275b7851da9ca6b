//! mp_server: the primary of DPDK's client_server_mp example. It receives on its ports
//! and hands each frame, by flow hash, to the ring of one client; the clients (`mp_client
//! -n N`, secondaries) send the frames out. See `apps::client_server` for the shared table.
//!
//! ```text
//! mp_server [EAL options] -- -p PORTMASK -n NUM_CLIENTS [-T STATS_PERIOD]
//! ```
//! Needs two lcores: RX runs on the first worker, the main lcore watches the clients and
//! prints statistics every STATS_PERIOD seconds (default 1, 0: only at the end). Frames
//! for a client that is not running are dropped and counted; the ring of a client that
//! exits or dies is emptied back into the pool, the frames it was sending are settled (those
//! its TX queues took stay theirs, the rest are freed), and what a dead client's TX queues
//! hold is freed as their devices finish sending it: a client killed at any moment loses
//! no mbuf.

use apps::client_server::{self as cs, ServerInfo, DRAINING, HANDED_BACK};
use apps::{bump, die, install_stop_signals, stop_requested};
use clap::Parser;
use eal::ring::RingFlags;
use eal::Role;
use net::mbuf::{DEFAULT_DATAROOM, DEFAULT_HEADROOM};
use net::mbuf_ring::{MbufRing, MAX_BURST};
use net::{Mbuf, PktmbufPool, Port, PortConf, RxQueue, TxQueue};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BURST: usize = 32;
// A client's share of one RX burst goes on its ring in one call.
const _: () = assert!(BURST <= MAX_BURST);
const RX_DESC: u32 = 1024;
const TX_DESC: u32 = 1024;

#[derive(Parser, Debug)]
#[command(
    name = "mp_server",
    about = "Receive on ports and hand frames to client processes by flow hash"
)]
struct Args {
    /// Hexadecimal mask of the ports to receive on
    #[arg(short = 'p', value_parser = apps::parse_portmask)]
    portmask: u64,
    /// How many clients (mp_client -n 0 .. N-1)
    #[arg(short = 'n', value_parser = clap::value_parser!(u16).range(1..=cs::MAX_CLIENTS as i64))]
    num_clients: u16,
    /// Seconds between statistics (0: only at the end)
    #[arg(short = 'T', default_value_t = 1)]
    stats_period: u64,
}

/// Receives on `queues` and puts each frame on its client's ring until stopped.
fn rx_loop(mut queues: Vec<RxQueue>, rings: Vec<MbufRing>, info: &ServerInfo) {
    let n = rings.len() as u32;
    let mut pkts: Vec<Mbuf> = Vec::with_capacity(BURST);
    let mut per_client: Vec<Vec<Mbuf>> = (0..n).map(|_| Vec::with_capacity(BURST)).collect();
    while !stop_requested() {
        for q in &mut queues {
            if q.rx_burst(&mut pkts, BURST) == 0 {
                continue;
            }
            for m in pkts.drain(..) {
                let c = (cs::flow_hash(&m) % n) as usize;
                per_client[c].push(m);
            }
            for (c, frames) in per_client.iter_mut().enumerate() {
                if frames.is_empty() {
                    continue;
                }
                let slot = &info.clients[c];
                let taken = if slot.pid.load(Ordering::Acquire) > 0 {
                    rings[c].enqueue_burst(frames)
                } else {
                    0
                };
                bump(&slot.rx, taken as u64);
                // What the ring did not take is dropped.
                bump(&slot.rx_drop, frames.len() as u64);
                net::mbuf::free_bulk(frames);
            }
        }
    }
}

/// Empties client `c`'s ring into the pool when its client is gone: exited (slot 0, frames
/// left on the ring; or `HANDED_BACK`, frames left in its hand) or dead (a pid that no longer
/// exists). The frames a client held are settled first (`cs::settle_hand`), with its TX
/// queues taken over; then what those queues' devices had sent goes back to the pool.
fn reap(c: u16, info: &ServerInfo, ring: &MbufRing, ports: &[Port]) {
    let slot = &info.clients[c as usize];
    let pid = slot.pid.load(Ordering::Acquire);
    let dead = pid > 0 && !eal::pid_alive(pid);
    let gone = (pid == 0 && !ring.is_empty()) || pid == HANDED_BACK || dead;
    if !gone
        || slot
            .pid
            .compare_exchange(pid, DRAINING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    if dead {
        log::warn!("client {c} (pid {pid}) died: its frames go back to the pool");
    }
    let held = ring.claims_in_flight().1 > 0;
    // Taking a queue over repairs it if its poller died inside a burst.
    let mut queues: Vec<TxQueue> = Vec::new();
    if dead || held {
        for p in ports {
            match p.tx_queue(c) {
                Ok(q) => queues.push(q),
                Err(e) => log::warn!(
                    "client {c}: cannot take TX queue {c} of port {}: {e}",
                    p.id()
                ),
            }
        }
    }
    if held && queues.len() == ports.len() {
        bump(&slot.drained, cs::settle_hand(info, c, ring, ports));
    } else if held {
        log::warn!("client {c}: frames it held stay in use: not every TX queue could be taken");
        ring.sc_dequeue_finish(ring.claims_in_flight().1);
    }
    // No client takes from the ring while the slot says DRAINING.
    let mut left: Vec<Mbuf> = Vec::with_capacity(BURST);
    loop {
        let k = ring.dequeue_burst(BURST, |m| left.push(m));
        if k == 0 {
            break;
        }
        net::mbuf::free_bulk(&mut left);
        bump(&slot.drained, k as u64);
    }
    for q in &mut queues {
        cs::free_sent(q, c);
    }
    // The next client starts with no notes (this one may have died before clearing them).
    for note in &slot.notes {
        note.store(0, Ordering::Release);
    }
    slot.pid.store(0, Ordering::Release);
}

fn show_stats(ports: &[Port], info: &ServerInfo) {
    println!("\nPORTS\n-----");
    for p in ports {
        let s = p.stats();
        println!(
            "Port {} - rx: {:>9}  tx: {:>9}",
            p.id(),
            s.ipackets,
            s.opackets
        );
    }
    println!("\nCLIENTS\n-------");
    for (c, slot) in info.clients[..info.num_clients as usize].iter().enumerate() {
        let v = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let pid = slot.pid.load(Ordering::Relaxed);
        println!(
            "Client {c:>2} - rx: {:>9}, rx_drop: {:>9}, drained: {:>9}, tx: {:>9}, {}",
            v(&slot.rx),
            v(&slot.rx_drop),
            v(&slot.drained),
            v(&slot.tx),
            if pid > 0 {
                format!("pid {pid}")
            } else {
                "not running".into()
            }
        );
    }
}

fn main() {
    install_stop_signals();
    let all: Vec<String> = std::env::args().collect();
    let (eal, app) = apps::init(&all);
    let args: Args = apps::parse_app_args(eal, &app);
    if eal.role() != Role::Primary {
        die(eal, "mp_server is the primary: start it first, without --proc-type=secondary, and the clients after it");
    }
    let ids = apps::ports_in_mask(args.portmask).unwrap_or_else(|e| die(eal, e));
    if ids.len() > cs::MAX_PORTS {
        die(
            eal,
            format!(
                "{} ports in the mask: mp_server serves at most {}",
                ids.len(),
                cs::MAX_PORTS
            ),
        );
    }
    let ports: Vec<Port> = ids
        .iter()
        .map(|id| Port::by_id(*id).unwrap_or_else(|e| die(eal, e)))
        .collect();
    let Some(rx_lcore) = eal.lcores().workers().next() else {
        die(
            eal,
            "mp_server receives on a worker lcore: give at least two lcores, e.g. -l 0-1",
        );
    };
    let nc = args.num_clients;
    // Every ring full: the ports' RX and TX rings and the clients' rings, plus bursts in hand.
    let mbufs = ports.len() as u32 * (RX_DESC + nc as u32 * TX_DESC)
        + nc as u32 * cs::CLIENT_RING_SIZE
        + 2048;
    let pool = PktmbufPool::create(
        cs::POOL_NAME,
        mbufs,
        256,
        DEFAULT_HEADROOM,
        DEFAULT_DATAROOM,
    )
    .unwrap_or_else(|e| die(eal, format!("cannot create the mbuf pool of {mbufs}: {e}")));
    for p in &ports {
        let setup = || -> net::ethdev::Result<()> {
            p.configure(1, nc, PortConf::default())?;
            p.rx_queue_setup(0, RX_DESC, &pool)?;
            for q in 0..nc {
                p.tx_queue_setup(q, TX_DESC)?;
            }
            p.start()?;
            p.promiscuous_enable()
        };
        setup().unwrap_or_else(|e| {
            die(
                eal,
                format!("port {} with {nc} TX queues (one per client): {e}", p.id()),
            )
        });
    }
    let rings: Vec<MbufRing> = (0..nc)
        .map(|c| {
            MbufRing::create(
                &cs::client_ring_name(c),
                cs::CLIENT_RING_SIZE,
                RingFlags::SP_ENQ | RingFlags::SC_DEQ,
            )
            .unwrap_or_else(|e| die(eal, format!("client {c}'s ring: {e}")))
        })
        .collect();
    let info = cs::create_info(nc, &ids).unwrap_or_else(|e| die(eal, e));
    for p in &ports {
        println!("Port {}: {}", p.id(), p.mac());
    }
    println!("mp_server ready: {} port(s), {nc} client(s)", ports.len());
    let rx_queues: Vec<RxQueue> = ports
        .iter()
        .map(|p| p.rx_queue(0).unwrap_or_else(|e| die(eal, e)))
        .collect();
    let rx_rings = rings.clone();
    let rx = eal
        .remote_launch(rx_lcore, move || {
            rx_loop(rx_queues, rx_rings, info);
            0
        })
        .unwrap_or_else(|e| die(eal, e));
    let mut shown = Instant::now();
    while !stop_requested() {
        std::thread::sleep(Duration::from_millis(50));
        for (c, ring) in rings.iter().enumerate() {
            reap(c as u16, info, ring, &ports);
        }
        if args.stats_period > 0 && shown.elapsed() >= Duration::from_secs(args.stats_period) {
            show_stats(&ports, info);
            shown = Instant::now();
        }
    }
    rx.wait();
    show_stats(&ports, info);
    for p in &ports {
        let _ = p.close();
    }
    eal.cleanup();
    println!("Bye...");
}
