//! Which process of the group holds which lcore (ARCHITECTURE.md, rule 4): claims in the
//! shared lcore table, release, and freeing the lcores of a dead holder, whose mempool
//! caches are emptied first (ARCHITECTURE.md, "Crash model").

use crate::config::SharedConfig;
use crate::mempool;
use crate::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

pub(crate) const ROLE_PRIMARY: i32 = 1;
pub(crate) const ROLE_SECONDARY: i32 = 2;

/// What must be repaired before a dead lcore's mempool caches are emptied, registered by
/// the layers above (see [`before_emptying_dead_caches`]).
static DEAD_CACHE_REPAIRS: Mutex<Vec<fn(i32)>> = Mutex::new(Vec::new());

/// Registers `repair`, run before the caches of a dead lcore are emptied, while they still
/// show what the dead thread had just put back: given the lcore's dead holder (an owner
/// word's value: a pid, or minus a repairer's), it must make every piece of shared state
/// the dead process was updating forget the objects it had already put back (pinned, see
/// [`mempool::LocalCache::put_pinned`]), and may settle what the process held (ethdev
/// repairs the queues of dead pollers, then frees the mbufs the process held). The holder
/// may still be exiting when the primary hears of it, so the value is to be trusted, not
/// checked. Until a process of the group has registered one, an lcore whose caches hold
/// pinned objects stays with its dead holder.
pub fn before_emptying_dead_caches(repair: fn(i32)) {
    DEAD_CACHE_REPAIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(repair);
}

/// A live process of the group and the lcores it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupProcess {
    /// Its pid.
    pub pid: i32,
    /// Whether it is the group's primary.
    pub primary: bool,
    /// The lcores it holds, in order.
    pub lcores: Vec<u32>,
}

/// The live processes holding lcores in `cfg`'s table (every process of the group holds
/// at least its main lcore), by pid. A dead one is left out at once, before the primary
/// has freed its lcores.
pub(crate) fn group_processes(cfg: &SharedConfig) -> Vec<GroupProcess> {
    let mut all: Vec<GroupProcess> = Vec::new();
    for (l, slot) in cfg.lcores.iter().enumerate() {
        let Some(pid) = slot.owner.live_holder() else {
            continue;
        };
        match all.iter_mut().find(|p| p.pid == pid) {
            Some(p) => p.lcores.push(l as u32),
            None => all.push(GroupProcess {
                pid,
                primary: slot.role.load(Ordering::Relaxed) == ROLE_PRIMARY,
                lcores: vec![l as u32],
            }),
        }
    }
    all.sort_by_key(|p| p.pid);
    all
}

/// Claims `lcores` for process `pid` in the group's lcore table, all or none.
pub(crate) fn claim_lcores(
    cfg: &SharedConfig,
    prefix: &str,
    pid: i32,
    role: i32,
    lcores: &[u32],
) -> Result<()> {
    let mut taken = Vec::new();
    for &l in lcores {
        let slot = cfg
            .lcores
            .get(l as usize)
            .ok_or_else(|| Error::Lcore(format!("lcore {l} is out of range")))?;
        // A holder (or repairer) that died before the primary noticed (yet) is freed,
        // its caches emptied, then the lcore is taken.
        if let Err(cur) = slot.owner.claim(pid, |dead| free_dead_lcore(cfg, l, dead)) {
            for &t in &taken {
                release_lcore(cfg, t, pid);
            }
            let kind = if slot.role.load(Ordering::Relaxed) == ROLE_PRIMARY {
                "the primary"
            } else {
                "secondary"
            };
            return Err(Error::LcoreBusy {
                lcore: l,
                holder: format!("{kind} process {cur}"),
                prefix: prefix.into(),
            });
        }
        crate::store_point!("lcore.claim");
        slot.role.store(role, Ordering::Relaxed);
        crate::store_point!("lcore.role");
        taken.push(l);
    }
    Ok(())
}

/// Frees `lcore` of dead holder `pid`, its mempool caches emptied before anyone can take
/// it (see [`owner::OwnerWord::free_from_dead`]). A cache with pinned objects is emptied only after the
/// registered repairs ran (see [`before_emptying_dead_caches`]); without them this
/// process leaves the lcore alone (a process that has them, the primary, will do it).
/// Returns whether this call did it.
pub(crate) fn free_dead_lcore(cfg: &SharedConfig, lcore: u32, pid: i32) -> bool {
    let repairs = DEAD_CACHE_REPAIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if repairs.is_empty() && mempool::any_pin(lcore) {
        return false;
    }
    cfg.lcores[lcore as usize].owner.free_from_dead(pid, || {
        for repair in &repairs {
            repair(pid);
        }
        mempool::flush_caches_of(&[lcore])
    })
}

pub(crate) fn release_lcore(cfg: &SharedConfig, lcore: u32, pid: i32) -> bool {
    let released = cfg.lcores[lcore as usize].owner.release(pid);
    crate::store_point!("lcore.release");
    released
}

pub(crate) fn parse_lcore_list(s: &str) -> Option<Vec<u32>> {
    s.split(',').map(|x| x.parse().ok()).collect()
}
