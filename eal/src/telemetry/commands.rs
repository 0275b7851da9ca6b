//! The EAL's telemetry commands, with DPDK 25.11's names and JSON shapes: the command line,
//! lcores, memzones, mempools and rings; and ours: the processes of the group and their
//! lcores, the shared hash tables.

use super::{parse_id, register_builtin};
use crate::hash::Hash;
use crate::lcore::MAX_LCORE;
use crate::mempool::{self, Mempool};
use crate::ring::{Ring, RingFlags};
use crate::Memzone;
use serde_json::{json, Value};

pub(super) fn register() {
    register_builtin(
        "/eal/params",
        "Returns EAL commandline parameters used. Takes no parameters",
        |_| Some(crate::eal().ok()?.eal_params().into()),
    );
    register_builtin(
        "/eal/app_params",
        "Returns app commandline parameters used. Takes no parameters",
        |_| Some(crate::eal().ok()?.app_params().into()),
    );
    register_builtin(
        "/eal/lcore/list",
        "List of lcore ids. Takes no parameters",
        |_| Some(crate::eal().ok()?.lcores().ids().into()),
    );
    register_builtin(
        "/eal/lcore/info",
        "Returns lcore info. Parameters: int lcore_id",
        |p| lcore_info(parse_id(p)?),
    );
    register_builtin(
        "/eal/memzone_list",
        "List of memzone index reserved. Takes no parameters",
        |_| Some((0..memzones()?.len()).collect::<Vec<_>>().into()),
    );
    register_builtin(
        "/eal/memzone_info",
        "Returns memzone info. Parameters: int mz_id",
        |p| {
            let i = usize::try_from(parse_id(p)?).ok()?;
            memzones()?.get(i).map(|mz| memzone_info(i, mz))
        },
    );
    register_builtin(
        "/mempool/list",
        "Returns list of available mempool. Takes no parameters",
        |_| {
            let pools = mempool::list().ok()?;
            Some(
                pools
                    .iter()
                    .map(|m| m.name().to_string())
                    .collect::<Vec<_>>()
                    .into(),
            )
        },
    );
    register_builtin(
        "/mempool/info",
        "Returns mempool info. Parameters: pool_name",
        |p| {
            let name = p?;
            let pools = mempool::list().ok()?;
            // An unknown name is an empty dict, as DPDK's.
            Some(
                pools
                    .iter()
                    .find(|m| m.name() == name)
                    .map_or(json!({}), mempool_info),
            )
        },
    );
    register_builtin(
        "/ring/list",
        "Returns list of available rings. Takes no parameters",
        |_| {
            let rings = Ring::list().ok()?;
            Some(
                rings
                    .iter()
                    .map(|r| r.name().to_string())
                    .collect::<Vec<_>>()
                    .into(),
            )
        },
    );
    register_builtin(
        "/ring/info",
        "Returns ring info. Parameters: ring_name.",
        |p| {
            let name = p?;
            let rings = Ring::list().ok()?;
            Some(
                rings
                    .iter()
                    .find(|r| r.name() == name)
                    .map_or(json!({}), ring_info),
            )
        },
    );
    register_builtin(
        "/rpmd/processes",
        "Returns the processes of this group, each with its role and lcores. Takes no parameters",
        |_| processes(),
    );
    register_builtin(
        "/rpmd/hash/list",
        "Returns the names of the group's hash tables. Takes no parameters",
        |_| Some(Hash::list().ok()?.into()),
    );
    register_builtin(
        "/rpmd/hash/info",
        "Returns a hash table's key length, entries, keys held and function. Parameters: table_name",
        |p| {
            let h = Hash::find_existing(p?).ok()?;
            Some(json!({
                "name": h.name(), "key_len": h.key_len(), "entries": h.capacity(),
                "count": h.count(), "function": h.function().name(),
                "extendable": u8::from(h.extendable()),
            }))
        },
    );
}

fn memzones() -> Option<Vec<Memzone>> {
    Some(crate::eal().ok()?.memzone_list())
}

/// An lcore of this process, as DPDK's `/eal/lcore/info`; `None` for another's.
fn lcore_info(id: u64) -> Option<Value> {
    let eal = crate::eal().ok()?;
    let id = u32::try_from(id)
        .ok()
        .filter(|l| (*l as usize) < MAX_LCORE)?;
    let cpus = eal.lcores().cpus_of(id)?;
    Some(json!({
        "lcore_id": id,
        "socket": cpus.first().map_or(0, |c| crate::sys::cpu_node(*c)),
        "role": "RTE",
        "cpuset": cpus,
    }))
}

/// A memzone, as DPDK's `/eal/memzone_info`: the exporter's memory figures add up the
/// hugepages its zones span.
fn memzone_info(index: usize, mz: &Memzone) -> Value {
    let page = crate::eal().map_or(4096, |e| e.config().page_size.max(1));
    let base = mz.addr() & !(page - 1);
    let end = (mz.addr() + mz.len().max(1)).div_ceil(page) * page;
    json!({
        "Zone": index,
        "Name": mz.name(),
        "Length": mz.len(),
        "Address": format!("{:#x}", mz.addr()),
        "Socket": 0,
        "Flags": mz.flags().bits(),
        "Hugepage_size": page,
        "Hugepage_base": format!("{base:#x}"),
        "Hugepage_used": (end - base) / page,
    })
}

/// A mempool, as DPDK's `/mempool/info` (the keys this pool has), and ours: `in_use`.
fn mempool_info(m: &Mempool) -> Value {
    json!({
        "name": m.name(),
        "socket_id": 0,
        "size": m.size(),
        "cache_size": m.cache_size(),
        "elt_size": m.elt_size(),
        "populated_size": m.size(),
        "total_cache_count": m.cached(),
        "common_pool_count": m.available(),
        "in_use": m.in_use(),
    })
}

/// A ring, as DPDK's `/ring/info`, and ours: the claims a dead producer or consumer left.
fn ring_info(r: &Ring) -> Value {
    let (enqueue_claims, dequeue_claims) = r.claims_in_flight();
    let single = |flag, one, many| if r.flags().contains(flag) { one } else { many };
    let size = r.size();
    json!({
        "name": r.name(),
        "socket": 0,
        "flags": r.flags().bits(),
        "producer_type": single(RingFlags::SP_ENQ, "SP", "MP"),
        "consumer_type": single(RingFlags::SC_DEQ, "SC", "MC"),
        "size": size,
        "mask": format!("{:#x}", size - 1),
        "capacity": r.capacity(),
        "used_count": r.count(),
        "enqueue_claims": enqueue_claims,
        "dequeue_claims": dequeue_claims,
    })
}

/// Every live process of the group: pid, role, name and lcores.
fn processes() -> Option<Value> {
    let list: Vec<Value> = crate::eal()
        .ok()?
        .processes()
        .into_iter()
        .map(|p| {
            json!({
                "pid": p.pid,
                "role": if p.primary { "primary" } else { "secondary" },
                "name": crate::sys::process_name(p.pid),
                "lcores": p.lcores,
            })
        })
        .collect();
    Some(list.into())
}
