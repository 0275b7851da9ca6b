//! testpmd: forwards between paired ports in one of DPDK's forward modes until SIGINT,
//! SIGTERM or `quit`, then prints DPDK's forward statistics.
//!
//! ```text
//! testpmd [EAL options] -- [--forward-mode=io|mac|macswap|txonly|rxonly] [--stats-period S]
//!         [--burst N] [--txpkts LEN] [--total-num-mbufs N] [--nb-cores N] [--rxq N] [--txq N]
//!         [--rxd N] [--txd N] [--num-procs N --proc-id K] [--auto-start] [--record-core-cycles]
//!         [--record-burst-stats] [--tx-offloads=0xMASK] [-i]
//! ```
//! `--tx-offloads` is DPDK's mask of TX offloads (`RTE_ETH_TX_OFFLOAD_*` bits); by default,
//! as DPDK's testpmd, `MBUF_FAST_FREE` (0x10000) on the ports that offer it: every mode here
//! sends single-segment packets of one pool per queue. `--tx-offloads=0x0` turns it off.
//! `-i` reads a few of DPDK's interactive commands from standard input while forwarding
//! runs (it starts at once, as without `-i`): `port attach DEVARGS` (a `--vdev` name or a
//! PCI address), `port detach PORT`, `port stop PORT|all`, `port start PORT|all`, `quit`.
//! Attached ports are seen by every process of the group but not forwarded by this run;
//! stopped ports are polled in vain (by every process) until started again.
//! Ports are paired 0-1, 2-3...; with one port, it forwards to itself. The main lcore
//! prints statistics; forwarding runs on the worker lcores (`--nb-cores` of them).
//!
//! Multi-process, as DPDK's testpmd: every process is given the same `--rxq`/`--txq` (the
//! queues of each port) and `--num-procs`; process K (`--proc-id`, 0 for the primary)
//! forwards queues `K * rxq / N` to `(K + 1) * rxq / N - 1`. The primary sets the ports up;
//! a secondary (`--proc-type=secondary`) only polls its queues.

use apps::{bump, die, install_stop_signals, stop_requested};
use clap::{Parser, ValueEnum};
use eal::Role;
use net::ethdev::TxOffloads;
use net::mbuf::{DEFAULT_DATAROOM, DEFAULT_HEADROOM};
use net::{ether, MacAddr, Mbuf, PktmbufPool, Port, PortConf, RxQueue, TxQueue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POOL_NAME: &str = "mb_pool_0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Io,
    Mac,
    Macswap,
    Txonly,
    Rxonly,
}

#[derive(Parser, Debug)]
#[command(
    name = "testpmd",
    about = "Forward packets between ports, as DPDK's testpmd"
)]
struct Args {
    #[arg(long = "forward-mode", value_enum, default_value = "io")]
    forward_mode: Mode,
    /// Print port statistics every S seconds (0: only at the end)
    #[arg(long = "stats-period", default_value_t = 0)]
    stats_period: u64,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    burst: u16,
    /// Packet length in txonly mode
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(60..=1514))]
    txpkts: u16,
    #[arg(long = "total-num-mbufs", default_value_t = 16384)]
    total_num_mbufs: u32,
    /// How many worker lcores forward
    #[arg(long = "nb-cores", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=128))]
    nb_cores: u16,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    rxq: u16,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    txq: u16,
    #[arg(long, default_value_t = 1024)]
    rxd: u32,
    #[arg(long, default_value_t = 1024)]
    txd: u32,
    /// Accepted for DPDK compatibility: forwarding always starts at once
    #[arg(long = "auto-start")]
    auto_start: bool,
    /// How many processes share the ports' queues
    #[arg(long = "num-procs", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    num_procs: u16,
    /// This process's number, 0 (the primary) to num-procs - 1
    #[arg(long = "proc-id", default_value_t = 0)]
    proc_id: u16,
    /// Count the TSC cycles of forwarding iterations that moved packets, and print the
    /// cycles per packet at the end (as DPDK's testpmd)
    #[arg(long = "record-core-cycles")]
    record_core_cycles: bool,
    /// Count the bursts of each size RX and TX returned, and print the most frequent sizes
    /// of each port at the end (as DPDK's testpmd)
    #[arg(long = "record-burst-stats")]
    record_burst_stats: bool,
    /// Read commands from standard input (port attach/detach, quit) while forwarding
    #[arg(short = 'i', long = "interactive")]
    interactive: bool,
    /// TX offloads (DPDK's RTE_ETH_TX_OFFLOAD_* bits, hexadecimal); MBUF_FAST_FREE is
    /// dropped on ports that do not offer it
    #[arg(long = "tx-offloads", default_value = "0x10000", value_parser = parse_tx_offloads)]
    tx_offloads: TxOffloads,
}

/// A `--tx-offloads` mask: hexadecimal, with or without `0x`, of known bits only.
fn parse_tx_offloads(s: &str) -> Result<TxOffloads, String> {
    let digits = s.trim_start_matches("0x").trim_start_matches("0X");
    let bits = u64::from_str_radix(digits, 16)
        .map_err(|e| format!("'{s}' is not a hexadecimal mask: {e}"))?;
    TxOffloads::from_bits(bits).ok_or_else(|| {
        format!(
            "{s} has TX offload bits this testpmd does not know: the known ones are {:#x}",
            TxOffloads::all().bits()
        )
    })
}

/// What one stream counted: RX, TX, dropped, the cycles of the iterations that moved
/// packets (with --record-core-cycles) and the bursts of each size (with
/// --record-burst-stats: index n counts the bursts of n packets, empty polls included).
#[derive(Default)]
struct StreamCounters {
    rx: AtomicU64,
    tx: AtomicU64,
    dropped: AtomicU64,
    cycles: AtomicU64,
    rx_bursts: Vec<AtomicU64>,
    tx_bursts: Vec<AtomicU64>,
}

impl StreamCounters {
    fn new(burst: usize, record_bursts: bool) -> StreamCounters {
        let sizes = || {
            (0..if record_bursts { burst + 1 } else { 0 })
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        StreamCounters {
            rx_bursts: sizes(),
            tx_bursts: sizes(),
            ..Default::default()
        }
    }
}

/// What the forwarding loop measures besides packets.
#[derive(Clone, Copy)]
struct Recording {
    cycles: bool,
    bursts: bool,
}

/// DPDK's burst line: how many bursts (empty polls included), then the share of empty
/// polls, of the two most frequent burst sizes, and of the rest, each shown while bursts
/// remain unaccounted for; None when there were no bursts.
fn burst_stats_line(dir: &str, spread: &[u64]) -> Option<String> {
    let total: u64 = spread.iter().sum();
    if total == 0 {
        return None;
    }
    let mut sizes: Vec<(usize, u64)> = spread
        .iter()
        .copied()
        .enumerate()
        .skip(1)
        .filter(|(_, n)| *n > 0)
        .collect();
    // Most bursts first; of equal counts, the smaller size first.
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown = std::iter::once((0, spread[0])).chain(sizes.into_iter().take(2));
    let (mut parts, mut counted, mut percent) = (Vec::new(), 0, 0);
    for (size, n) in shown {
        counted += n;
        if counted == total {
            parts.push(format!("{}% of {size} pkts", 100 - percent));
            break;
        }
        let p = n * 100 / total;
        parts.push(format!("{p}% of {size} pkts"));
        percent += p;
    }
    if counted < total {
        parts.push(format!("{}% of other", 100 - percent));
    }
    Some(format!("  {dir}-bursts : {total} [{}]", parts.join(" + ")))
}

/// RX queue `q` of one port to TX queue `q` of its peer.
struct Stream {
    rx: RxQueue,
    tx: TxQueue,
    tx_mac: MacAddr,
    peer_mac: MacAddr,
    counters: Arc<StreamCounters>,
}

/// Ethernet + IPv4 + UDP: the part of the template txonly writes into each frame.
const TXONLY_HEADER_LEN: usize = 42;

/// The frame txonly sends: Ethernet, IPv4 198.18.0.1 -> 198.18.0.2, UDP 9 -> 9 (as DPDK's).
fn txonly_template(len: u16, src: MacAddr, dst: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; len as usize];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = len - 14;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let sum = ip
        .chunks(2)
        .fold(0u32, |s, w| s + u16::from_be_bytes([w[0], w[1]]) as u32);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&9u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// Forwards `streams` in `mode` until stopped; txonly sends copies of a template frame in
/// mbufs of a pool (`txonly`, present in that mode only).
fn forward(
    mut streams: Vec<Stream>,
    mode: Mode,
    burst: usize,
    txonly: Option<(PktmbufPool, Vec<u8>)>,
    record: Recording,
) {
    let mut pkts: Vec<Mbuf> = Vec::with_capacity(burst);
    while !stop_requested() {
        for s in &mut streams {
            let start = if record.cycles {
                eal::timer::rdtsc()
            } else {
                0
            };
            if let Some((pool, template)) = &txonly {
                if !pool.alloc_bulk(&mut pkts, burst) {
                    continue;
                }
                // Headers only, as DPDK's txonly: the payload bytes are whatever the buffer
                // held, so that the frame length does not turn this into a memcpy benchmark.
                for m in &mut pkts {
                    if let Some(d) = m.append(template.len() as u16) {
                        d[..TXONLY_HEADER_LEN].copy_from_slice(&template[..TXONLY_HEADER_LEN]);
                    }
                }
            } else {
                let n = s.rx.rx_burst(&mut pkts, burst);
                if record.bursts {
                    bump(&s.counters.rx_bursts[n], 1);
                }
                if n == 0 {
                    continue;
                }
                bump(&s.counters.rx, n as u64);
                match mode {
                    Mode::Rxonly => net::mbuf::free_bulk(&mut pkts),
                    Mode::Mac => {
                        for m in &mut pkts {
                            ether::set_addrs(m.data_mut(), s.peer_mac, s.tx_mac);
                        }
                    }
                    Mode::Macswap => {
                        for m in &mut pkts {
                            ether::swap_addrs(m.data_mut());
                        }
                    }
                    _ => {}
                }
            }
            // Empty here in rxonly mode, which freed what it received.
            if !pkts.is_empty() {
                let sent = s.tx.tx_burst(&mut pkts);
                bump(&s.counters.tx, sent as u64);
                if record.bursts {
                    bump(&s.counters.tx_bursts[sent], 1);
                }
                if !pkts.is_empty() {
                    bump(&s.counters.dropped, pkts.len() as u64);
                    net::mbuf::free_bulk(&mut pkts);
                }
            }
            if record.cycles {
                bump(&s.counters.cycles, eal::timer::rdtsc() - start);
            }
        }
    }
}

fn show_port_stats(ports: &[Port], last: &mut [(Instant, u64, u64)]) {
    for (p, prev) in ports.iter().zip(last.iter_mut()) {
        let s = p.stats();
        let dt = prev.0.elapsed().as_secs_f64().max(1e-9);
        let (rx_pps, tx_pps) = (
            (s.ipackets - prev.1) as f64 / dt,
            (s.opackets - prev.2) as f64 / dt,
        );
        *prev = (Instant::now(), s.ipackets, s.opackets);
        println!(
            "\n  ######################## NIC statistics for port {}  ########################",
            p.id()
        );
        println!(
            "  RX-packets: {:<10} RX-missed: {:<10} RX-bytes:  {}",
            s.ipackets, s.imissed, s.ibytes
        );
        println!("  RX-errors: 0\n  RX-nombuf:  {:<10}", s.rx_nombuf);
        println!(
            "  TX-packets: {:<10} TX-errors: {:<10} TX-bytes:  {}",
            s.opackets, s.oerrors, s.obytes
        );
        println!("\n  Throughput (since last show)");
        println!("  Rx-pps: {:>12.0}\n  Tx-pps: {:>12.0}", rx_pps, tx_pps);
        println!("  ############################################################################");
    }
}

/// The queues of each port this process forwards (DPDK's split of `--rxq` over processes).
fn own_queues(args: &Args) -> Result<std::ops::Range<u16>, String> {
    if args.proc_id >= args.num_procs {
        return Err(format!(
            "--proc-id {} must be below --num-procs {}",
            args.proc_id, args.num_procs
        ));
    }
    let nb_q = args.rxq.min(args.txq);
    if !nb_q.is_multiple_of(args.num_procs) {
        return Err(format!(
            "{nb_q} queues cannot be shared evenly by {} processes: give --rxq and --txq a multiple of --num-procs",
            args.num_procs
        ));
    }
    let per_proc = nb_q / args.num_procs;
    Ok(args.proc_id * per_proc..(args.proc_id + 1) * per_proc)
}

/// Configures `port` with the queues and offloads of `args`, starts it and turns
/// promiscuous mode on.
fn setup_port(port: &Port, args: &Args, pool: &PktmbufPool) -> net::ethdev::Result<()> {
    let mut tx_offloads = args.tx_offloads;
    // As DPDK's testpmd: fast free is asked by default, so only where it is offered.
    if !port
        .info()
        .tx_offload_capa
        .contains(TxOffloads::MBUF_FAST_FREE)
    {
        tx_offloads.remove(TxOffloads::MBUF_FAST_FREE);
    }
    let conf = PortConf {
        rss: args.rxq > 1,
        tx_offloads,
    };
    port.configure(args.rxq, args.txq, conf)?;
    for q in 0..args.rxq {
        port.rx_queue_setup(q, args.rxd, pool)?;
    }
    for q in 0..args.txq {
        port.tx_queue_setup(q, args.txd)?;
    }
    port.start()?;
    port.promiscuous_enable()
}

/// Runs one interactive command; what to print.
fn run_command(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let total = || net::ethdev::ports().len();
    match words[..] {
        ["port", "attach", devargs] => match net::hotplug::attach(devargs) {
            Ok(p) => format!(
                "Attaching a new port...\nPort {} is attached. Now total ports is {}\nDone",
                p.id(),
                total()
            ),
            Err(e) => format!("Failed to attach port {devargs}: {e}"),
        },
        ["port", "detach", id] => match id.parse::<u16>() {
            Ok(id) => match net::hotplug::detach(id) {
                Ok(()) => format!(
                    "Removing a device...\nPort {id} is detached. Now total ports is {}\nDone",
                    total()
                ),
                Err(e) => format!("Failed to detach port {id}: {e}"),
            },
            Err(_) => format!("Bad port id '{id}'"),
        },
        ["port", verb @ ("stop" | "start"), which] => {
            let ports: Vec<Port> = match which {
                "all" => net::ethdev::ports(),
                id => match id.parse::<u16>().map(Port::by_id) {
                    Ok(Ok(p)) => vec![p],
                    Ok(Err(e)) => return format!("Bad port '{id}': {e}"),
                    Err(_) => return format!("Bad port id '{id}': give a number or 'all'"),
                },
            };
            let mut out = String::from(if verb == "stop" {
                "Stopping ports...\n"
            } else {
                "Starting ports...\n"
            });
            for p in &ports {
                let done = if verb == "stop" { p.stop() } else { p.start() };
                if let Err(e) = done {
                    out += &format!("Failed to {verb} port {}: {e}\n", p.id());
                }
            }
            out + "Done"
        }
        ["quit"] => {
            apps::request_stop();
            "Stopping...".into()
        }
        [] => String::new(),
        _ => format!(
            "Bad command '{line}': known are 'port attach DEVARGS', 'port detach PORT', 'port stop PORT|all', 'port start PORT|all', 'quit'"
        ),
    }
}

fn main() {
    install_stop_signals();
    let all: Vec<String> = std::env::args().collect();
    let (eal, app) = apps::init(&all);
    let args: Args = apps::parse_app_args(eal, &app);
    let ports = net::ethdev::ports();
    if ports.is_empty() {
        die(
            eal,
            "no ports: add some with --vdev (e.g. --vdev net_null0 --vdev net_null1)",
        );
    }
    let workers: Vec<u32> = eal
        .lcores()
        .workers()
        .take(args.nb_cores as usize)
        .collect();
    if workers.is_empty() {
        die(
            eal,
            "testpmd forwards on worker lcores: give at least two lcores, e.g. -l 0-1",
        );
    }
    let queues = own_queues(&args).unwrap_or_else(|e| die(eal, e));
    let pool = match eal.role() {
        Role::Primary => {
            let pool = PktmbufPool::create(
                POOL_NAME,
                args.total_num_mbufs,
                256,
                DEFAULT_HEADROOM,
                DEFAULT_DATAROOM,
            )
            .unwrap_or_else(|e| die(eal, format!("cannot create the mbuf pool: {e}")));
            for p in &ports {
                setup_port(p, &args, &pool)
                    .unwrap_or_else(|e| die(eal, format!("cannot set up port {}: {e}", p.id())));
            }
            Some(pool)
        }
        Role::Secondary => {
            for p in &ports {
                if p.nb_rx_queues() != args.rxq || p.nb_tx_queues() != args.txq {
                    die(eal, format!("port {} has {} RX and {} TX queues but this process was given --rxq={} --txq={}: give every process the primary's values", p.id(), p.nb_rx_queues(), p.nb_tx_queues(), args.rxq, args.txq));
                }
            }
            // Only txonly allocates; the RX queues refill from the primary's pool.
            (args.forward_mode == Mode::Txonly).then(|| {
                PktmbufPool::lookup(POOL_NAME).unwrap_or_else(|e| {
                    die(eal, format!("no mbuf pool '{POOL_NAME}' in the group ({e}): start testpmd as the primary first"))
                })
            })
        }
    };
    for p in &ports {
        println!("Port {}: {}", p.id(), p.mac());
    }
    // Paired topology: 0<->1, 2<->3; an odd last port forwards to itself.
    let peer = |i: usize| {
        if i.is_multiple_of(2) {
            (i + 1).min(ports.len() - 1)
        } else {
            i - 1
        }
    };
    let mut all_streams = Vec::new();
    let mut counters = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let tx_port = &ports[peer(i)];
        for q in queues.clone() {
            let c = Arc::new(StreamCounters::new(
                args.burst as usize,
                args.record_burst_stats,
            ));
            counters.push((p.id(), tx_port.id(), c.clone()));
            let rx = p.rx_queue(q).unwrap_or_else(|e| die(eal, e));
            let tx = tx_port.tx_queue(q).unwrap_or_else(|e| die(eal, e));
            all_streams.push(Stream {
                rx,
                tx,
                tx_mac: tx_port.mac(),
                peer_mac: MacAddr([2, 0, 0, 0, 0, tx_port.id() as u8]),
                counters: c,
            });
        }
    }
    // Streams go round-robin to the forwarding lcores.
    let mut per_lcore: Vec<Vec<Stream>> = workers.iter().map(|_| Vec::new()).collect();
    for (i, s) in all_streams.into_iter().enumerate() {
        per_lcore[i % workers.len()].push(s);
    }
    println!(
        "{:?} packet forwarding - ports={} - cores={} - streams={}",
        args.forward_mode,
        ports.len(),
        workers.len(),
        counters.len()
    );
    println!("Start automatic packet forwarding");
    let mut handles = Vec::new();
    for (l, streams) in workers.iter().zip(per_lcore) {
        if streams.is_empty() {
            continue;
        }
        let (mode, burst) = (args.forward_mode, args.burst as usize);
        let record = Recording {
            cycles: args.record_core_cycles,
            bursts: args.record_burst_stats,
        };
        let txonly = pool.filter(|_| mode == Mode::Txonly).map(|p| {
            (
                p,
                txonly_template(args.txpkts, streams[0].tx_mac, streams[0].peer_mac),
            )
        });
        handles.push(
            eal.remote_launch(*l, move || {
                forward(streams, mode, burst, txonly, record);
                0
            })
            .unwrap_or_else(|e| die(eal, e)),
        );
    }
    if args.interactive {
        std::thread::spawn(|| {
            for line in std::io::stdin().lines().map_while(Result::ok) {
                println!("{}", run_command(line.trim()));
            }
        });
    }
    let mut last: Vec<(Instant, u64, u64)> = ports.iter().map(|_| (Instant::now(), 0, 0)).collect();
    let mut shown = Instant::now();
    while !stop_requested() {
        std::thread::sleep(Duration::from_millis(20));
        if args.stats_period > 0 && shown.elapsed() >= Duration::from_secs(args.stats_period) {
            show_port_stats(&ports, &mut last);
            shown = Instant::now();
        }
    }
    println!("Telling cores to stop...\nWaiting for lcores to finish...");
    for h in handles {
        h.wait();
    }
    let (mut trx, mut ttx, mut tdrop) = (0, 0, 0);
    for p in &ports {
        let (rx, tx, dropped) = counters.iter().fold((0, 0, 0), |acc, (rxp, txp, c)| {
            let rx = if *rxp == p.id() {
                c.rx.load(Ordering::Relaxed)
            } else {
                0
            };
            let (tx, d) = if *txp == p.id() {
                (
                    c.tx.load(Ordering::Relaxed),
                    c.dropped.load(Ordering::Relaxed),
                )
            } else {
                (0, 0)
            };
            (acc.0 + rx, acc.1 + tx, acc.2 + d)
        });
        (trx, ttx, tdrop) = (trx + rx, ttx + tx, tdrop + dropped);
        println!(
            "  ---------------------- Forward statistics for port {}  ----------------------",
            p.id()
        );
        println!(
            "  RX-packets: {rx:<14} RX-dropped: {:<13} RX-total: {rx}",
            0
        );
        println!(
            "  TX-packets: {tx:<14} TX-dropped: {dropped:<13} TX-total: {}",
            tx + dropped
        );
        if args.record_burst_stats {
            for (dir, rx_side) in [("RX", true), ("TX", false)] {
                let mut spread = vec![0u64; args.burst as usize + 1];
                for (rxp, txp, c) in &counters {
                    let (mine, sizes) = if rx_side {
                        (*rxp == p.id(), &c.rx_bursts)
                    } else {
                        (*txp == p.id(), &c.tx_bursts)
                    };
                    if mine {
                        for (sum, n) in spread.iter_mut().zip(sizes) {
                            *sum += n.load(Ordering::Relaxed);
                        }
                    }
                }
                if let Some(line) = burst_stats_line(dir, &spread) {
                    println!("{line}");
                }
            }
        }
        println!("  ----------------------------------------------------------------------------");
    }
    println!("  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++");
    println!(
        "  RX-packets: {trx:<14} RX-dropped: {:<13} RX-total: {trx}",
        0
    );
    println!(
        "  TX-packets: {ttx:<14} TX-dropped: {tdrop:<13} TX-total: {}",
        ttx + tdrop
    );
    println!("  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++");
    if args.record_core_cycles {
        // As DPDK's: per packet received, or sent in txonly mode.
        let packets = if args.forward_mode == Mode::Txonly {
            ttx
        } else {
            trx
        };
        let cycles: u64 = counters
            .iter()
            .map(|(_, _, c)| c.cycles.load(Ordering::Relaxed))
            .sum();
        let mode = args
            .forward_mode
            .to_possible_value()
            .map(|v| v.get_name().to_string());
        println!(
            "\n  CPU cycles/packet={:.2} (total cycles={cycles} / total {} packets={packets}) at {} MHz Clock",
            cycles as f64 / packets.max(1) as f64,
            mode.unwrap_or_default(),
            eal.tsc_hz() / 1_000_000
        );
    }
    println!("Done.");
    for p in &ports {
        let _ = p.close();
    }
    eal.cleanup();
    println!("Bye...");
}

#[cfg(test)]
mod tests {
    use super::{burst_stats_line, parse_tx_offloads, TxOffloads};

    #[test]
    fn tx_offloads_are_a_hexadecimal_mask_of_known_bits() {
        assert_eq!(parse_tx_offloads("0x10000"), Ok(TxOffloads::MBUF_FAST_FREE));
        assert_eq!(parse_tx_offloads("10000"), Ok(TxOffloads::MBUF_FAST_FREE));
        assert_eq!(parse_tx_offloads("0x0"), Ok(TxOffloads::empty()));
        assert!(
            parse_tx_offloads("0x1").is_err(),
            "VLAN insertion is not known"
        );
        assert!(parse_tx_offloads("fast").is_err());
    }

    #[test]
    fn burst_line_shows_empty_polls_then_the_two_most_frequent_sizes_then_the_rest() {
        let mut spread = [0u64; 33];
        spread[32] = 60;
        spread[0] = 30;
        spread[4] = 6;
        spread[5] = 4;
        assert_eq!(
            burst_stats_line("RX", &spread).as_deref(),
            Some("  RX-bursts : 100 [30% of 0 pkts + 60% of 32 pkts + 6% of 4 pkts + 4% of other]")
        );
        // As DPDK prints a null port's full bursts.
        assert_eq!(
            burst_stats_line("TX", &[0, 0, 5]).as_deref(),
            Some("  TX-bursts : 5 [0% of 0 pkts + 100% of 2 pkts]")
        );
        assert_eq!(
            burst_stats_line("RX", &[1, 0, 2]).as_deref(),
            Some("  RX-bursts : 3 [33% of 0 pkts + 67% of 2 pkts]")
        );
        assert_eq!(burst_stats_line("TX", &[0; 4]), None);
    }
}
