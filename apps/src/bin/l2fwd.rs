//! l2fwd, as DPDK's example: forwards every frame received on a port out of its paired
//! port, rewriting the source MAC to the TX port's and the destination to
//! `02:00:00:00:00:<TX port>`.
//!
//! ```text
//! l2fwd [EAL options] -- -p PORTMASK [-q NQ] [-T PERIOD] [--[no-]mac-updating] [--portmap "(0,1),(2,3)"]
//! ```
//! Ports are paired in order (0 with 1, 2 with 3...) unless `--portmap` says otherwise.
//! Each lcore polls up to NQ ports. Statistics print every PERIOD seconds (0: never) and
//! once more at the end; SIGINT or SIGTERM stops it.
//!
//! As a secondary (`--proc-type=secondary`), it forwards on the ports its primary set up
//! and started (queue 0 of each, which the primary must leave unpolled), and leaves them
//! running when it exits.

use apps::{
    die, install_stop_signals, parse_portmap, parse_portmask, ports_in_mask, stop_requested,
};
use clap::Parser;
use eal::Role;
use net::mbuf::{DEFAULT_DATAROOM, DEFAULT_HEADROOM};
use net::{ether, MacAddr, Mbuf, PktmbufPool, Port, PortConf, PortState};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_PKT_BURST: usize = 32;
const NB_RXD: u32 = 1024;
const NB_TXD: u32 = 1024;
const MEMPOOL_CACHE: u32 = 256;
/// Packets waiting for TX go out at the latest after this long (DPDK's BURST_TX_DRAIN_US).
const DRAIN: Duration = Duration::from_micros(100);

#[derive(Parser, Debug)]
#[command(
    name = "l2fwd",
    about = "Forward frames between paired ports, as DPDK's l2fwd"
)]
struct Args {
    /// Hexadecimal mask of the ports to use
    #[arg(short = 'p', value_parser = parse_portmask)]
    portmask: u64,
    /// Number of ports (queues) each lcore polls
    #[arg(short = 'q', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    queues_per_lcore: u16,
    /// Seconds between statistics (0 disables them)
    #[arg(short = 'T', default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86400))]
    period: u64,
    /// Rewrite source and destination MACs (the default)
    #[arg(long = "mac-updating", overrides_with = "no_mac_updating")]
    mac_updating: bool,
    /// Forward frames unchanged
    #[arg(long = "no-mac-updating")]
    no_mac_updating: bool,
    /// Explicit port pairs, e.g. "(0,1),(2,3)"
    #[arg(long, value_parser = |s: &str| parse_portmap(s).map(PortMap))]
    portmap: Option<PortMap>,
}

/// `--portmap` pairs (a newtype: clap gives a bare `Vec` a meaning of its own).
#[derive(Clone, Debug)]
struct PortMap(Vec<(u16, u16)>);

/// Per-port counters of this app.
#[derive(Default)]
struct PortCounters {
    tx: AtomicU64,
    rx: AtomicU64,
    dropped: AtomicU64,
}

fn print_stats(counters: &[(u16, Arc<PortCounters>)], clear: bool) {
    let mut out = String::new();
    if clear {
        out.push_str("\x1b[2J\x1b[1;1H");
    }
    out.push_str("\nPort statistics ====================================");
    let (mut ts, mut tr, mut td) = (0, 0, 0);
    for (p, c) in counters {
        let (s, r, d) = (
            c.tx.load(Ordering::Relaxed),
            c.rx.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
        );
        out.push_str(&format!(
            "\nStatistics for port {p} ------------------------------\nPackets sent: {s:>24}\nPackets received: {r:>20}\nPackets dropped: {d:>21}"
        ));
        (ts, tr, td) = (ts + s, tr + r, td + d);
    }
    out.push_str(&format!(
        "\nAggregate statistics ===============================\nTotal packets sent: {ts:>18}\nTotal packets received: {tr:>14}\nTotal packets dropped: {td:>15}\n====================================================\n"
    ));
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes());
    let _ = o.flush();
}

/// One RX port polled by an lcore, and where its frames go.
struct Stream {
    rx: net::RxQueue,
    rx_counters: Arc<PortCounters>,
    dst: usize,
}

/// A TX port as one lcore uses it: its queue handle, pending frames, new addresses.
struct TxPort {
    tx: net::TxQueue,
    pending: Vec<Mbuf>,
    counters: Arc<PortCounters>,
    src_mac: MacAddr,
    dst_mac: MacAddr,
}

impl TxPort {
    fn flush(&mut self) {
        let n = self.tx.tx_burst(&mut self.pending);
        self.counters.tx.fetch_add(n as u64, Ordering::Relaxed);
        if !self.pending.is_empty() {
            // The TX queue is full: drop what is left, as DPDK's tx buffer does.
            self.counters
                .dropped
                .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
            net::mbuf::free_bulk(&mut self.pending);
        }
    }
}

fn forward_loop(mut streams: Vec<Stream>, mut txs: Vec<TxPort>, mac_updating: bool) {
    let mut burst: Vec<Mbuf> = Vec::with_capacity(MAX_PKT_BURST);
    let mut last_drain = Instant::now();
    while !stop_requested() {
        if last_drain.elapsed() >= DRAIN {
            for t in txs.iter_mut().filter(|t| !t.pending.is_empty()) {
                t.flush();
            }
            last_drain = Instant::now();
        }
        for s in &mut streams {
            let n = s.rx.rx_burst(&mut burst, MAX_PKT_BURST);
            if n == 0 {
                continue;
            }
            s.rx_counters.rx.fetch_add(n as u64, Ordering::Relaxed);
            let t = &mut txs[s.dst];
            for mut m in burst.drain(..) {
                if mac_updating {
                    ether::set_addrs(m.data_mut(), t.dst_mac, t.src_mac);
                }
                t.pending.push(m);
            }
            if t.pending.len() >= MAX_PKT_BURST {
                t.flush();
            }
        }
    }
    for t in &mut txs {
        t.flush();
    }
}

fn main() {
    install_stop_signals();
    let all: Vec<String> = std::env::args().collect();
    let (eal, app) = apps::init(&all);
    let args: Args = apps::parse_app_args(eal, &app);
    let mac_updating = !args.no_mac_updating || args.mac_updating;
    let ports = ports_in_mask(args.portmask).unwrap_or_else(|e| die(eal, e));
    let pairs: Vec<(u16, u16)> = match &args.portmap {
        Some(PortMap(m)) => {
            for (a, b) in m {
                if !ports.contains(a) || !ports.contains(b) {
                    die(eal, format!("--portmap pair ({a},{b}) uses a port outside the port mask {:#x}", args.portmask));
                }
            }
            m.clone()
        }
        None if !ports.len().is_multiple_of(2) => die(eal, format!("the port mask selects {} ports: an even number is needed to pair them (or use --portmap)", ports.len())),
        None => ports.chunks(2).map(|c| (c[0], c[1])).collect(),
    };
    // Each port forwards to its partner.
    let mut dst_of: Vec<(u16, u16)> = Vec::new();
    for (a, b) in &pairs {
        dst_of.push((*a, *b));
        if a != b {
            dst_of.push((*b, *a));
        }
    }
    let lcores: Vec<u32> = eal.lcores().ids();
    let primary = eal.role() == Role::Primary;
    let pool = primary.then(|| {
        let nb_mbufs = (ports.len() as u32
            * (NB_RXD + NB_TXD + MAX_PKT_BURST as u32 + lcores.len() as u32 * MEMPOOL_CACHE))
            .max(8192);
        PktmbufPool::create(
            "mbuf_pool",
            nb_mbufs,
            MEMPOOL_CACHE,
            DEFAULT_HEADROOM,
            DEFAULT_DATAROOM,
        )
        .unwrap_or_else(|e| die(eal, format!("cannot create the mbuf pool: {e}")))
    });

    let mut handles: Vec<Port> = Vec::new();
    for &p in &ports {
        let port = Port::by_id(p).unwrap_or_else(|e| die(eal, e));
        let setup = match &pool {
            Some(pool) => port
                .configure(1, 1, PortConf::default())
                .and_then(|_| port.rx_queue_setup(0, NB_RXD, pool))
                .and_then(|_| port.tx_queue_setup(0, NB_TXD))
                .and_then(|_| port.start())
                .and_then(|_| port.promiscuous_enable()),
            // The RX queue refills from the pool the primary gave it.
            None if port.state() == PortState::Started => Ok(()),
            None => die(eal, format!("port {p} is {:?}: as a secondary, l2fwd forwards on ports its primary has started", port.state())),
        };
        if let Err(e) = setup {
            die(eal, format!("cannot set up port {p}: {e}"));
        }
        println!("Port {p}, MAC address: {}", port.mac());
        handles.push(port);
    }
    for port in &handles {
        match port.wait_link_up(Duration::from_secs(9)) {
            Ok(l) => println!("Port {} Link {l}", port.id()),
            Err(e) => println!("Port {}: {e}", port.id()),
        }
    }

    // RX ports go to lcores in order, NQ per lcore.
    let counters: Vec<(u16, Arc<PortCounters>)> = ports
        .iter()
        .map(|p| (*p, Arc::new(PortCounters::default())))
        .collect();
    let counter_of = |p: u16| {
        counters
            .iter()
            .find(|c| c.0 == p)
            .map(|c| c.1.clone())
            .unwrap_or_default()
    };
    let mut per_lcore: Vec<Vec<u16>> = vec![Vec::new(); lcores.len()];
    let mut rx_ports = dst_of.iter().map(|d| d.0).collect::<Vec<_>>();
    rx_ports.sort_unstable();
    for (i, p) in rx_ports.iter().enumerate() {
        let slot = i / args.queues_per_lcore as usize;
        if slot >= lcores.len() {
            die(
                eal,
                format!(
                    "{} ports at {} per lcore need {} lcores; give more lcores or a larger -q",
                    rx_ports.len(),
                    args.queues_per_lcore,
                    rx_ports.len().div_ceil(args.queues_per_lcore as usize)
                ),
            );
        }
        per_lcore[slot].push(*p);
    }

    let mut workers = Vec::new();
    let mut main_work = None;
    for (k, lcore) in lcores.iter().enumerate() {
        if per_lcore[k].is_empty() {
            println!("lcore {lcore} has nothing to do");
            continue;
        }
        // Ports have one TX queue: it belongs to the lcore that receives from the partner.
        let mut txs = Vec::new();
        let mut streams = Vec::new();
        for &rxp in &per_lcore[k] {
            let dst = dst_of
                .iter()
                .find(|d| d.0 == rxp)
                .map(|d| d.1)
                .unwrap_or(rxp);
            let dport = Port::by_id(dst).unwrap_or_else(|e| die(eal, e));
            let tx = dport.tx_queue(0).unwrap_or_else(|e| die(eal, format!("port {dst}: {e} (with -q, the ports of a pair must share an lcore when they are forwarded both ways)")));
            txs.push(TxPort {
                tx,
                pending: Vec::with_capacity(MAX_PKT_BURST * 2),
                counters: counter_of(dst),
                src_mac: dport.mac(),
                dst_mac: MacAddr([0x02, 0, 0, 0, 0, dst as u8]),
            });
            let rx = Port::by_id(rxp)
                .and_then(|p| p.rx_queue(0))
                .unwrap_or_else(|e| die(eal, e));
            println!("Lcore {lcore}: RX port {rxp} TX port {dst}");
            streams.push(Stream {
                rx,
                rx_counters: counter_of(rxp),
                dst: txs.len() - 1,
            });
        }
        if *lcore == eal.main_lcore() {
            main_work = Some((streams, txs));
        } else {
            workers.push(
                eal.remote_launch(*lcore, move || {
                    forward_loop(streams, txs, mac_updating);
                    0
                })
                .unwrap_or_else(|e| die(eal, e)),
            );
        }
    }

    // The main lcore forwards too, and prints the statistics between bursts.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let period = Duration::from_secs(args.period);
    let stats_thread = {
        let c = counters.clone();
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !stop_requested() {
                std::thread::sleep(Duration::from_millis(50));
                if !period.is_zero() && last.elapsed() >= period {
                    print_stats(&c, tty);
                    last = Instant::now();
                }
            }
        })
    };
    match main_work {
        Some((streams, txs)) => forward_loop(streams, txs, mac_updating),
        None => {
            while !stop_requested() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    for w in workers {
        w.wait();
    }
    let _ = stats_thread.join();
    print_stats(&counters, false);
    // A secondary's queues went back with its forwarding loops; the ports are the primary's.
    for port in handles.iter().filter(|_| primary) {
        print!("Closing port {}...", port.id());
        match port.close() {
            Ok(()) => println!(" Done"),
            Err(e) => println!(" {e}"),
        }
    }
    eal.cleanup();
    println!("Bye...");
}
