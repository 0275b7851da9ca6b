//! proc-info: what a running group holds, read by a secondary process (as DPDK's
//! `dpdk-proc-info`): port statistics and extended statistics, port settings and link,
//! memzones, rings and mempools with their in-use counts, hash tables and their keys;
//! resets port statistics.
//!
//! ```text
//! proc-info [EAL options] -- [-p PORTMASK] [--stats] [--xstats] [--stats-reset] [--xstats-reset]
//!           [--show-port] [--show-mempool] [--show-ring] [-m] [--show-hash [NAME] [--top N]]
//!           [--json]
//! ```
//! Without an action it prints `--stats` of every port. It always joins the group as a
//! secondary (give `--file-prefix` as the primary was given it) and, unless lcores are
//! given, runs on lcore 127 so that it takes none of the forwarding lcores. `--json`
//! prints one JSON object holding what the actions selected, instead of text.

use apps::die;
use apps::flow_stats::{self, flow_row, FlowStats, FLOW_HEADER, UNTRACKED};
use clap::Parser;
use eal::hash::Hash;
use net::{Direction, Port};
use serde_json::{json, Map, Value};

/// The lcore proc-info runs on unless told otherwise: the last one, which apps seldom use.
const TOOL_LCORE: u32 = 127;

#[derive(Parser, Debug)]
#[command(
    name = "proc-info",
    about = "Show the statistics, ports, memzones, rings and mempools of a running group"
)]
struct Args {
    /// Hexadecimal mask of the ports to show (default: all)
    #[arg(short = 'p', value_parser = apps::parse_portmask)]
    portmask: Option<u64>,
    /// Port statistics (the default action)
    #[arg(long)]
    stats: bool,
    /// Extended statistics: per queue and the driver's own counters
    #[arg(long)]
    xstats: bool,
    /// Zero the port statistics, as every process of the group sees them
    #[arg(long = "stats-reset")]
    stats_reset: bool,
    /// Zero the extended statistics too: the port statistics and the driver's counters
    #[arg(long = "xstats-reset")]
    xstats_reset: bool,
    /// Port settings: driver, MAC, link, queues and the mbufs each holds, MTU, promiscuous
    /// mode
    #[arg(long = "show-port")]
    show_port: bool,
    /// Every mempool with its size, free and in-use counts
    #[arg(long = "show-mempool")]
    show_mempool: bool,
    /// Every ring with its capacity, count, and the entries claimed and not yet published
    /// on each side
    #[arg(long = "show-ring")]
    show_ring: bool,
    /// Every memzone
    #[arg(short = 'm')]
    memzones: bool,
    /// Every hash table (name, key length, entries, count, function, extendable); with
    /// NAME, that table and its keys: the flows with most packets for symmetric_mp's
    /// symmetric_mp_flows, the keys in hex and their data for any other
    #[arg(long = "show-hash", value_name = "NAME")]
    show_hash: Option<Option<String>>,
    /// How many flows or keys --show-hash NAME shows
    #[arg(long, value_name = "N", requires = "show_hash", default_value_t = 10)]
    top: usize,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

fn port_stats(p: &Port) -> Value {
    let s = p.stats();
    json!({
        "ipackets": s.ipackets, "opackets": s.opackets,
        "ibytes": s.ibytes, "obytes": s.obytes,
        "imissed": s.imissed, "oerrors": s.oerrors, "rx_nombuf": s.rx_nombuf,
        "q_ipackets": s.q_ipackets, "q_opackets": s.q_opackets,
        "q_ibytes": s.q_ibytes, "q_obytes": s.q_obytes,
    })
}

fn port_settings(p: &Port) -> Value {
    let link = p.link();
    let held = |dir, n| -> Vec<u32> {
        (0..n)
            .map(|q| p.queue_mbufs(dir, q).unwrap_or_default())
            .collect()
    };
    json!({
        "name": p.name(),
        "driver": p.driver_name(),
        "mac": p.mac().to_string(),
        "state": p.state().as_str(),
        "link": { "up": link.up, "speed_mbps": link.speed_mbps, "full_duplex": link.full_duplex },
        "nb_rx_queues": p.nb_rx_queues(),
        "nb_tx_queues": p.nb_tx_queues(),
        "rx_queue_mbufs": held(Direction::Rx, p.nb_rx_queues()),
        "tx_queue_mbufs": held(Direction::Tx, p.nb_tx_queues()),
        "mtu": p.mtu(),
        "promiscuous": p.promiscuous(),
        "allmulticast": p.allmulticast(),
    })
}

fn print_stats(id: u16, s: &Value) {
    let n = |k: &str| s[k].as_u64().unwrap_or_default();
    let border = "########################";
    println!("\n  {border} NIC statistics for port {id:<2} {border}");
    println!(
        "  RX-packets: {:<10}  RX-missed:  {:<10}  RX-bytes:  {}",
        n("ipackets"),
        n("imissed"),
        n("ibytes")
    );
    println!("  RX-nombuf:  {}", n("rx_nombuf"));
    println!(
        "  TX-packets: {:<10}  TX-errors:  {:<10}  TX-bytes:  {}",
        n("opackets"),
        n("oerrors"),
        n("obytes")
    );
    println!("  {border}{border}{border}");
}

fn print_settings(id: u16, s: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let link = &s["link"];
    let link_text = if link["up"] == true {
        format!(
            "up, {} Mbps, {}",
            link["speed_mbps"],
            if link["full_duplex"] == true {
                "full-duplex"
            } else {
                "half-duplex"
            }
        )
    } else {
        "down".into()
    };
    println!(
        "\n  - port {id}: {} ({})",
        text(&s["name"]),
        text(&s["driver"])
    );
    println!(
        "    mac {}, {}, link {link_text}",
        text(&s["mac"]),
        text(&s["state"])
    );
    println!(
        "    queues rx {} tx {}, mtu {}, promiscuous {}, all-multicast {}",
        s["nb_rx_queues"], s["nb_tx_queues"], s["mtu"], s["promiscuous"], s["allmulticast"]
    );
    println!(
        "    mbufs held by rx queues {}, by tx queues {}",
        s["rx_queue_mbufs"], s["tx_queue_mbufs"]
    );
}

fn mempools() -> Vec<Value> {
    eal::mempool::list()
        .unwrap_or_default()
        .iter()
        .map(|mp| {
            json!({
                "name": mp.name(), "size": mp.size(), "elt_size": mp.elt_size(),
                "cache_size": mp.cache_size(), "available": mp.available(),
                "cached": mp.cached(), "in_use": mp.in_use(),
            })
        })
        .collect()
}

fn rings(eal: &eal::Eal) -> Vec<Value> {
    eal.memzone_list()
        .iter()
        .filter_map(|mz| mz.name().strip_prefix("RG_"))
        .filter_map(|name| eal::ring::Ring::lookup(name).ok())
        .map(|r| {
            let (enqueue_claims, dequeue_claims) = r.claims_in_flight();
            json!({
                "name": r.name(), "capacity": r.capacity(), "count": r.count(),
                "free": r.free_count(),
                "enqueue_claims": enqueue_claims, "dequeue_claims": dequeue_claims,
                "single_producer": r.flags().contains(eal::ring::RingFlags::SP_ENQ),
                "single_consumer": r.flags().contains(eal::ring::RingFlags::SC_DEQ),
            })
        })
        .collect()
}

fn memzones(eal: &eal::Eal) -> Vec<Value> {
    eal.memzone_list()
        .iter()
        .map(|mz| {
            json!({
                "name": mz.name(), "len": mz.len(),
                "addr": format!("{:#x}", mz.addr()), "iova": format!("{:#x}", mz.iova()),
            })
        })
        .collect()
}

/// What every table shows: its name and how it was made, and how many keys it holds.
fn hash_summary(h: &Hash) -> Value {
    json!({
        "name": h.name(), "key_len": h.key_len(), "entries": h.capacity(), "count": h.count(),
        "function": h.function().name(), "extendable": h.extendable(),
    })
}

/// Every hash table of the group; one that cannot be read, with the reason.
fn hash_tables() -> Vec<Value> {
    Hash::list()
        .unwrap_or_default()
        .iter()
        .map(|name| match Hash::find_existing(name) {
            Ok(h) => hash_summary(&h),
            Err(e) => json!({ "name": name, "error": e.to_string() }),
        })
        .collect()
}

/// Table `name` and its first `top` keys: for the flow table, its flows with most packets
/// and the totals; for any other, keys in hex with their data, in the table's order.
fn hash_table(name: &str, top: usize) -> Result<Value, String> {
    if name == flow_stats::TABLE {
        let f = FlowStats::open()?;
        let flows = f.flows();
        let (packets, bytes) = f.untracked();
        let mut v = hash_summary(f.table());
        v["flows"] = flows.len().into();
        v["packets"] = flows.iter().map(|f| f.packets).sum::<u64>().into();
        v["bytes"] = flows.iter().map(|f| f.bytes).sum::<u64>().into();
        v["untracked"] = json!({ "packets": packets, "bytes": bytes });
        v["top"] = flows.iter().take(top).map(|f| f.to_json()).collect();
        return Ok(v);
    }
    let h = Hash::find_existing(name).map_err(|e| e.to_string())?;
    let mut v = hash_summary(&h);
    v["keys"] = h
        .iter()
        .take(top)
        .map(|e| {
            let hex: String = e.key.iter().map(|b| format!("{b:02x}")).collect();
            json!({ "key": hex, "data": e.data, "position": e.position })
        })
        .collect();
    Ok(v)
}

fn main() {
    let (eal, app) = apps::init(&apps::tool_eal_args(
        std::env::args().collect(),
        TOOL_LCORE,
        "0",
    ));
    let mut args: Args = apps::parse_app_args(eal, &app);
    let any_action = args.xstats
        || args.stats_reset
        || args.xstats_reset
        || args.show_port
        || args.show_mempool
        || args.show_ring
        || args.memzones
        || args.show_hash.is_some();
    args.stats |= !any_action;
    let ports: Vec<Port> = match args.portmask {
        Some(mask) => apps::ports_in_mask(mask)
            .unwrap_or_else(|e| die(eal, e))
            .into_iter()
            .filter_map(|id| Port::by_id(id).ok())
            .collect(),
        None => net::ethdev::ports(),
    };
    let mut out = Map::new();
    let mut per_port = Vec::new();
    for p in &ports {
        let mut o = Map::new();
        o.insert("port".into(), p.id().into());
        if args.show_port {
            o.insert("settings".into(), port_settings(p));
        }
        if args.stats {
            o.insert("stats".into(), port_stats(p));
        }
        if args.xstats {
            let x: Map<String, Value> =
                p.xstats().into_iter().map(|(k, v)| (k, v.into())).collect();
            o.insert("xstats".into(), x.into());
        }
        if args.stats_reset {
            p.stats_reset();
            o.insert("stats_reset".into(), true.into());
        }
        if args.xstats_reset {
            p.xstats_reset();
            o.insert("xstats_reset".into(), true.into());
        }
        per_port.push(Value::Object(o));
    }
    out.insert("ports".into(), per_port.into());
    if args.show_mempool {
        out.insert("mempools".into(), mempools().into());
    }
    if args.show_ring {
        out.insert("rings".into(), rings(eal).into());
    }
    if args.memzones {
        out.insert("memzones".into(), memzones(eal).into());
    }
    match &args.show_hash {
        Some(Some(name)) => {
            let table = hash_table(name, args.top).unwrap_or_else(|e| die(eal, e));
            out.insert("hash".into(), table);
        }
        Some(None) => {
            out.insert("hash_tables".into(), hash_tables().into());
        }
        None => {}
    }
    if args.json {
        match serde_json::to_string_pretty(&Value::Object(out)) {
            Ok(s) => println!("{s}"),
            Err(e) => die(eal, format!("cannot write JSON: {e}")),
        }
    } else {
        print_text(&out);
    }
    eal.cleanup();
}

fn print_text(out: &Map<String, Value>) {
    for p in out["ports"].as_array().into_iter().flatten() {
        let id = p["port"].as_u64().unwrap_or_default() as u16;
        if let Some(s) = p.get("settings") {
            print_settings(id, s);
        }
        if let Some(s) = p.get("stats") {
            print_stats(id, s);
        }
        if let Some(Value::Object(x)) = p.get("xstats") {
            println!("\n  ###### NIC extended statistics for port {id:<2} #########");
            for (k, v) in x {
                println!("  {k}: {v}");
            }
        }
        if p.get("stats_reset").is_some() {
            println!("\n  NIC statistics for port {id} cleared");
        }
        if p.get("xstats_reset").is_some() {
            println!("\n  NIC extended statistics for port {id} cleared");
        }
    }
    let table = |title: &str, key: &str, cols: &[&str]| {
        if let Some(rows) = out.get(key).and_then(Value::as_array) {
            println!("\n  ---------- {title} ----------");
            for r in rows {
                let fields: Vec<String> = cols.iter().map(|c| format!("{c}={}", r[*c])).collect();
                println!("  {}", fields.join(" "));
            }
        }
    };
    table(
        "mempools",
        "mempools",
        &[
            "name",
            "size",
            "elt_size",
            "cache_size",
            "available",
            "cached",
            "in_use",
        ],
    );
    table(
        "rings",
        "rings",
        &[
            "name",
            "capacity",
            "count",
            "free",
            "enqueue_claims",
            "dequeue_claims",
        ],
    );
    table("memzones", "memzones", &["name", "len", "addr", "iova"]);
    table(
        "hash tables",
        "hash_tables",
        &[
            "name",
            "key_len",
            "entries",
            "count",
            "function",
            "extendable",
        ],
    );
    if let Some(h) = out.get("hash") {
        print_hash(h);
    }
}

fn print_hash(h: &Value) {
    let n = |v: &Value| v.as_u64().unwrap_or_default();
    println!(
        "\n  ---------- hash table {} ----------",
        h["name"].as_str().unwrap_or_default()
    );
    println!(
        "  key_len={} entries={} count={} function={} extendable={}",
        h["key_len"], h["entries"], h["count"], h["function"], h["extendable"]
    );
    if let Some(top) = h["top"].as_array() {
        println!(
            "  flows={} packets={} bytes={}; the {} with most packets:",
            h["flows"],
            h["packets"],
            h["bytes"],
            top.len()
        );
        println!("  {FLOW_HEADER}");
        for f in top {
            let flow = f["flow"].as_str().unwrap_or_default();
            println!("  {}", flow_row(n(&f["packets"]), n(&f["bytes"]), flow));
        }
        let untracked = &h["untracked"];
        if n(&untracked["packets"]) > 0 {
            let (p, b) = (n(&untracked["packets"]), n(&untracked["bytes"]));
            println!("  {}", flow_row(p, b, UNTRACKED));
        }
    }
    for k in h["keys"].as_array().into_iter().flatten() {
        println!(
            "  key={} data={}",
            k["key"].as_str().unwrap_or_default(),
            k["data"]
        );
    }
}
