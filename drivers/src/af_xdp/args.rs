//! `net_af_xdp`'s device arguments, with DPDK's names and defaults.

use super::xsk::BindMode;
use crate::netdev;
use net::ethdev::{Error, PortContext, Result};

/// The arguments the driver takes.
const ARGS: &[&str] = &[
    "iface",
    "start_queue",
    "queue_count",
    "zero_copy",
    "force_copy",
    "busy_budget",
    "mode",
];

/// Where the program is linked: DPDK 25.11's `mode`.
fn attach_flags(mode: Option<&str>) -> Option<u32> {
    match mode {
        None => Some(0),
        Some("drv") => Some(4),
        Some("skb") => Some(2),
        Some(_) => None,
    }
}

/// A port's set-up, from its device arguments.
pub(super) struct Config {
    pub(super) iface: String,
    pub(super) start_queue: u32,
    pub(super) queue_count: u32,
    pub(super) bind: BindMode,
    pub(super) busy_budget: u32,
    pub(super) attach_flags: u32,
}

/// The set-up `ctx`'s arguments ask for, or what is wrong with them.
pub(super) fn parse(ctx: &PortContext) -> Result<Config> {
    crate::check_args(ctx.name, ctx.args, ARGS)?;
    let bad = |why: String| Error::BadArg {
        port: ctx.name.into(),
        why,
    };
    let number = |key: &str, default: u32| -> Result<u32> {
        match crate::arg(ctx.args, key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| bad(format!("{key}={v}: give a whole number"))),
        }
    };
    let iface = crate::arg(ctx.args, "iface")
        .ok_or_else(|| {
            bad("iface= is missing: name the kernel interface whose queues the port takes".into())
        })?
        .to_string();
    if !netdev::valid_name(&iface) {
        return Err(bad(format!(
            "iface={iface}: interface names have 1 to 15 bytes and no '/'"
        )));
    }
    let force_copy = number("force_copy", 0)? != 0;
    let bind = match (crate::arg(ctx.args, "zero_copy"), force_copy) {
        (None | Some("auto"), false) => BindMode::Auto,
        (Some("0"), _) | (None | Some("auto"), true) => BindMode::Copy,
        (Some("1"), false) => BindMode::ZeroCopy,
        (Some("1"), true) => {
            return Err(bad(
                "zero_copy=1 and force_copy=1 contradict each other".into()
            ))
        }
        (Some(v), _) => return Err(bad(format!("zero_copy={v}: give auto, 0 or 1"))),
    };
    let queue_count = number("queue_count", 1)?;
    if queue_count == 0 || queue_count as usize > net::ethdev::MAX_QUEUES {
        return Err(bad(format!(
            "queue_count={queue_count}: give 1 to {}",
            net::ethdev::MAX_QUEUES
        )));
    }
    let mode = crate::arg(ctx.args, "mode");
    Ok(Config {
        iface,
        start_queue: number("start_queue", 0)?,
        queue_count,
        bind,
        busy_budget: number("busy_budget", 64)?,
        attach_flags: attach_flags(mode)
            .ok_or_else(|| bad(format!("mode={}: give drv or skb", mode.unwrap_or(""))))?,
    })
}
