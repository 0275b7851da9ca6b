//! The ports' telemetry commands, with DPDK 25.11's names and JSON shapes (`/ethdev/...`),
//! and ours: which process and lcore poll each queue (`/rpmd/ethdev/queues`).

use super::{ports, Direction, Port, PortState};
use eal::telemetry::parse_id;
use serde_json::{json, Map, Value};

/// As DPDK's `RTE_TEL_MAX_DICT_ENTRIES`: `/ethdev/xstats` shows at most this many.
const MAX_DICT_ENTRIES: usize = 256;

/// A command: its name, its help, and what computes its value from its parameters.
type Command = (
    &'static str,
    &'static str,
    fn(Option<&str>) -> Option<Value>,
);

/// Registers the commands (once per process; `net::init` calls it).
pub(crate) fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let commands: [Command; 6] = [
            (
                "/ethdev/list",
                "Returns list of available ethdev ports. Takes no parameters",
                |_| Some(ports().iter().map(Port::id).collect::<Vec<_>>().into()),
            ),
            (
                "/ethdev/info",
                "Returns the device info for a port. Parameters: int port_id",
                |p| Some(info(&port(p)?)),
            ),
            (
                "/ethdev/stats",
                "Returns the common stats for a port. Parameters: int port_id",
                |p| Some(stats(&port(p)?)),
            ),
            (
                "/ethdev/xstats",
                "Returns the extended stats for a port. Parameters: int port_id,hide_zero=true|false(Optional for indicates hide zero xstats)",
                |p| Some(xstats(&port(p)?, hide_zero(p))),
            ),
            (
                "/ethdev/link_status",
                "Returns the link status for a port. Parameters: int port_id",
                |p| Some(link_status(&port(p)?)),
            ),
            (
                "/rpmd/ethdev/queues",
                "Returns the process and lcore polling each queue of a port. Parameters: int port_id",
                |p| Some(queues(&port(p)?)),
            ),
        ];
        for (name, help, handler) in commands {
            if let Err(e) = eal::telemetry::register(name, help, handler) {
                log::error!("{e}");
            }
        }
    });
}

/// The port a command names: its first parameter, as DPDK parses it.
fn port(param: Option<&str>) -> Option<Port> {
    let id = u16::try_from(parse_id(param)?).ok()?;
    ports().into_iter().find(|p| p.id() == id)
}

/// `hide_zero=true` after the port id.
fn hide_zero(param: Option<&str>) -> bool {
    param
        .and_then(|p| p.split_once(','))
        .is_some_and(|(_, opts)| opts.split(',').any(|o| o == "hide_zero=true"))
}

fn info(p: &Port) -> Value {
    let state = p.state();
    let started = u8::from(state == PortState::Started);
    let queue_states = |n: u16| vec![started; n as usize];
    let mac = p.mac().to_string().to_uppercase();
    json!({
        "name": p.name(),
        "state": 1,
        "nb_rx_queues": p.nb_rx_queues(),
        "nb_tx_queues": p.nb_tx_queues(),
        "port_id": p.id(),
        "mtu": p.mtu(),
        "mac_addr": mac,
        "promiscuous": u8::from(p.promiscuous()),
        "scattered_rx": 0,
        "all_multicast": u8::from(p.allmulticast()),
        "dev_started": started,
        "lro": 0,
        "dev_configured": u8::from(!matches!(state, PortState::Attached | PortState::Unused)),
        "rxq_state": queue_states(p.nb_rx_queues()),
        "txq_state": queue_states(p.nb_tx_queues()),
        "numa_node": -1,
        "dev_flags": "0x0",
        "rx_offloads": [],
        "tx_offloads": [],
        "ethdev_rss_hf": "0x0",
        "driver": p.driver_name(),
    })
}

/// DPDK 25.11's eight counters.
fn stats(p: &Port) -> Value {
    let s = p.stats();
    json!({
        "ipackets": s.ipackets, "opackets": s.opackets,
        "ibytes": s.ibytes, "obytes": s.obytes,
        "imissed": s.imissed, "ierrors": 0,
        "oerrors": s.oerrors, "rx_nombuf": s.rx_nombuf,
    })
}

fn xstats(p: &Port, hide_zero: bool) -> Value {
    let valid = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/')
    };
    let map: Map<String, Value> = p
        .xstats()
        .into_iter()
        .filter(|(n, v)| valid(n) && !(hide_zero && *v == 0))
        .take(MAX_DICT_ENTRIES)
        .map(|(n, v)| (n, v.into()))
        .collect();
    Value::Object(map)
}

fn link_status(p: &Port) -> Value {
    let link = p.link();
    if !link.up {
        return json!({ "status": "DOWN" });
    }
    // DPDK's RTE_ETH_SPEED_NUM_UNKNOWN for a speed the driver does not know.
    let speed = if link.speed_mbps == 0 {
        u32::MAX
    } else {
        link.speed_mbps
    };
    json!({
        "status": "UP",
        "speed": speed,
        "duplex": if link.full_duplex { "full-duplex" } else { "half-duplex" },
    })
}

/// Per direction, each queue with its poller: `{"rx":[{"queue":0,"pid":..,"lcore":..}],..}`
/// (`pid` 0 when nobody polls it, `lcore` -1 before the first burst).
fn queues(p: &Port) -> Value {
    let list = |dir: Direction, n: u16| -> Vec<Value> {
        (0..n)
            .map(|q| {
                let poller = p.queue_poller(dir, q);
                json!({
                    "queue": q,
                    "pid": poller.map_or(0, |w| w.pid),
                    "lcore": poller.and_then(|w| w.lcore).map_or(-1, i64::from),
                    "mbufs": p.queue_mbufs(dir, q).unwrap_or_default(),
                })
            })
            .collect()
    };
    json!({
        "rx": list(Direction::Rx, p.nb_rx_queues()),
        "tx": list(Direction::Tx, p.nb_tx_queues()),
    })
}
