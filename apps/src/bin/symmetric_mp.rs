//! symmetric_mp, as DPDK's example: N processes share the ports; process K polls RX queue
//! K of every port and sends what it receives out of TX queue K of the paired port. The
//! primary (K = 0) configures every port with N queues and RSS, so each process gets its
//! share of the flows.
//!
//! ```text
//! symmetric_mp [EAL options] -- -p PORTMASK --num-procs N --proc-id K
//! ```
//! SIGINT or SIGTERM stops a process; it prints its per-port counts first.

use apps::{die, install_stop_signals, parse_portmask, ports_in_mask, stop_requested};
use clap::Parser;
use eal::Role;
use net::mbuf::{DEFAULT_DATAROOM, DEFAULT_HEADROOM};
use net::{Mbuf, PktmbufPool, Port, PortConf};

const POOL_NAME: &str = "MProc_pktmbuf_pool";
const NB_RXD: u32 = 1024;
const NB_TXD: u32 = 1024;
const BURST: usize = 32;

#[derive(Parser, Debug)]
#[command(
    name = "symmetric_mp",
    about = "Share ports between processes, one queue each, as DPDK's symmetric_mp"
)]
struct Args {
    /// Hexadecimal mask of the ports to use (an even number of them)
    #[arg(short = 'p', value_parser = parse_portmask)]
    portmask: u64,
    /// How many processes share the ports
    #[arg(long = "num-procs", value_parser = clap::value_parser!(u16).range(1..=16))]
    num_procs: u16,
    /// This process's number, 0 to num-procs - 1 (0 is the primary)
    #[arg(long = "proc-id")]
    proc_id: u16,
}

fn main() {
    install_stop_signals();
    let all: Vec<String> = std::env::args().collect();
    let (eal, app) = apps::init(&all);
    let args: Args = apps::parse_app_args(eal, &app);
    if args.proc_id >= args.num_procs {
        die(
            eal,
            format!(
                "--proc-id {} must be below --num-procs {}",
                args.proc_id, args.num_procs
            ),
        );
    }
    let ports = ports_in_mask(args.portmask).unwrap_or_else(|e| die(eal, e));
    if !ports.len().is_multiple_of(2) {
        die(
            eal,
            format!(
                "the port mask selects {} ports: an even number is needed to pair them",
                ports.len()
            ),
        );
    }
    let q = args.proc_id;
    match eal.role() {
        Role::Primary => {
            let n = ports.len() as u32 * (NB_RXD + NB_TXD) * args.num_procs as u32 + 4096;
            let pool = PktmbufPool::create(POOL_NAME, n, 256, DEFAULT_HEADROOM, DEFAULT_DATAROOM)
                .unwrap_or_else(|e| die(eal, format!("cannot create the mbuf pool: {e}")));
            for &p in &ports {
                let port = Port::by_id(p).unwrap_or_else(|e| die(eal, e));
                let nq = args.num_procs;
                let mut setup = port.configure(
                    nq,
                    nq,
                    PortConf {
                        rss: nq > 1,
                        ..PortConf::default()
                    },
                );
                for k in 0..nq {
                    setup = setup
                        .and_then(|_| port.rx_queue_setup(k, NB_RXD, &pool))
                        .and_then(|_| port.tx_queue_setup(k, NB_TXD));
                }
                // As DPDK's example: receive every frame, whatever its destination MAC.
                if let Err(e) = setup
                    .and_then(|_| port.start())
                    .and_then(|_| port.promiscuous_enable())
                {
                    die(eal, format!("cannot set up port {p}: {e}"));
                }
            }
        }
        Role::Secondary => {
            for &p in &ports {
                let port = Port::by_id(p).unwrap_or_else(|e| die(eal, e));
                if port.nb_rx_queues() != args.num_procs {
                    die(eal, format!("port {p} has {} queues, but --num-procs is {}: give every process the same --num-procs", port.nb_rx_queues(), args.num_procs));
                }
            }
        }
    }
    // Queue q of each port, and queue q of its partner for sending.
    let mut streams = Vec::new();
    for pair in ports.chunks(2) {
        for (rx, tx) in [(pair[0], pair[1]), (pair[1], pair[0])] {
            let rxq = Port::by_id(rx)
                .and_then(|p| p.rx_queue(q))
                .unwrap_or_else(|e| die(eal, e));
            let txq = Port::by_id(tx)
                .and_then(|p| p.tx_queue(q))
                .unwrap_or_else(|e| die(eal, e));
            streams.push((rxq, txq, [0u64; 3]));
        }
    }
    println!("Finished Process Init. Process {q} polls queue {q} of ports {ports:?}");
    let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST);
    while !stop_requested() {
        for (rx, tx, counts) in &mut streams {
            let n = rx.rx_burst(&mut burst, BURST);
            if n == 0 {
                continue;
            }
            counts[0] += n as u64;
            let sent = tx.tx_burst(&mut burst);
            counts[1] += sent as u64;
            counts[2] += burst.len() as u64;
            net::mbuf::free_bulk(&mut burst);
        }
    }
    for (rx, _, c) in &streams {
        println!(
            "Port {}: RX - {}, TX - {}, Drop - {}",
            rx.port().id(),
            c[0],
            c[1],
            c[2]
        );
    }
    drop(streams);
    eal.cleanup();
}
