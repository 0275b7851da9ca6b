//! symmetric_mp, as DPDK's example: N processes share the ports; process K polls RX queue
//! K of every port and sends what it receives out of TX queue K of the paired port. The
//! primary (K = 0) configures every port with N queues and RSS, so each process gets its
//! share of the flows.
//!
//! ```text
//! symmetric_mp [EAL options] -- -p PORTMASK --num-procs N --proc-id K
//!              [--flow-stats [--flow-entries N]]
//! ```
//! SIGINT or SIGTERM stops a process; it prints its per-port counts first.
//!
//! With `--flow-stats` (give it to every process), each process counts the packets and
//! bytes of every flow it receives (IPv4 5-tuple; other frames under one key) in one table
//! the group shares (`apps::flow_stats`): the primary creates it, the others open it. Each
//! prints the busiest flows as it exits; `proc-info --show-hash symmetric_mp_flows` reads
//! them while the group runs.

use apps::flow_stats::{flow_row, FlowStats, DEFAULT_ENTRIES, FLOW_HEADER, TABLE, UNTRACKED};
use apps::{die, install_stop_signals, parse_portmask, ports_in_mask, stop_requested};
use clap::Parser;
use eal::Role;
use net::mbuf::{DEFAULT_DATAROOM, DEFAULT_HEADROOM};
use net::{Mbuf, PktmbufPool, Port, PortConf};

const POOL_NAME: &str = "MProc_pktmbuf_pool";
const NB_RXD: u32 = 1024;
const NB_TXD: u32 = 1024;
const BURST: usize = 32;
/// Flows printed at exit.
const TOP_FLOWS: usize = 10;

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
    /// Count packets and bytes per flow in a table all processes share (give it to every
    /// process); read it with proc-info --show-hash symmetric_mp_flows
    #[arg(long = "flow-stats")]
    flow_stats: bool,
    /// Flows the table holds (the primary's choice: the others open its table)
    #[arg(long = "flow-entries", requires = "flow_stats", default_value_t = DEFAULT_ENTRIES,
          value_parser = clap::value_parser!(u32).range(8..=eal::hash::MAX_ENTRIES as i64))]
    flow_entries: u32,
}

/// The flow table, made by the primary and opened by the others; a process without
/// `--flow-stats` in a group that counts flows is told its share goes uncounted.
fn flow_stats(eal: &eal::Eal, args: &Args) -> Option<FlowStats> {
    if !args.flow_stats {
        if eal.role() == Role::Secondary && eal::hash::Hash::find_existing(TABLE).is_ok() {
            log::warn!("the group counts flows (--flow-stats) and this process does not count those of its queue: give it --flow-stats too");
        }
        return None;
    }
    let made = match eal.role() {
        Role::Primary => FlowStats::create(args.flow_entries),
        Role::Secondary => FlowStats::open().map_err(|e| {
            format!("--flow-stats: {e} (the primary makes it when given --flow-stats)")
        }),
    };
    Some(made.unwrap_or_else(|e| die(eal, e)))
}

fn print_flows(f: &FlowStats) {
    let flows = f.flows();
    let shown = flows.len().min(TOP_FLOWS);
    println!(
        "Flows in {TABLE}: {} of {}, the {shown} with most packets:",
        flows.len(),
        f.table().capacity()
    );
    println!("{FLOW_HEADER}");
    for fl in &flows[..shown] {
        println!("{}", flow_row(fl.packets, fl.bytes, &fl.key.to_string()));
    }
    let (packets, bytes) = f.untracked();
    if packets > 0 {
        println!("{}", flow_row(packets, bytes, UNTRACKED));
    }
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
    let mut flows = flow_stats(eal, &args);
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
            if let Some(f) = &mut flows {
                f.count(&burst);
            }
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
    if let Some(f) = &flows {
        print_flows(f);
    }
    drop(streams);
    eal.cleanup();
}
