//! What the applications share: start-up of the EAL and the ports, stop signals, and
//! command-line values with DPDK's spelling.

#![warn(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};

pub mod client_server;
pub mod flow_stats;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set the stop flag instead of killing the process.
pub fn install_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Whether a stop signal arrived (or [`request_stop`] was called).
#[inline]
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Adds to a counter that only one thread writes at a time, which others may read: a plain
/// load and store, no locked instruction on the forwarding path.
#[inline]
pub fn bump(counter: &std::sync::atomic::AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Asks every loop that checks [`stop_requested`] to end, as SIGINT does.
pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// Starts the EAL and the port layer with every driver; prints errors and exits on failure.
pub fn init(args: &[String]) -> (&'static eal::Eal, Vec<String>) {
    let (eal, app) = eal::init_or_exit(args);
    drivers::register_all();
    if let Err(e) = net::init() {
        eprintln!("error: {e}");
        eal.cleanup();
        std::process::exit(1);
    }
    (eal, app)
}

/// Parses the application's own arguments (what followed `--`): prints help and exits 0,
/// or prints the error and exits 1, releasing the group's resources either way.
pub fn parse_app_args<A: clap::Parser>(eal: &eal::Eal, app: &[String]) -> A {
    match A::try_parse_from(app) {
        Ok(a) => a,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            print!("{e}");
            eal.cleanup();
            std::process::exit(0);
        }
        Err(e) => die(eal, eal::options::command_line_message(&e)),
    }
}

/// `args` with `extra` EAL options put first (after the program name).
fn with_eal_options(mut args: Vec<String>, extra: Vec<String>) -> Vec<String> {
    args.splice(1.min(args.len())..1.min(args.len()), extra);
    args
}

/// The EAL options of `args` (between the program name and `--`).
fn eal_options(args: &[String]) -> &[String] {
    let eal_end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    &args[1.min(eal_end)..eal_end]
}

/// The command line of a program that is only ever a secondary (mp_client): the
/// secondary role unless one is given.
pub fn secondary_by_default(args: Vec<String>) -> Vec<String> {
    let given = eal_options(&args)
        .iter()
        .any(|a| a.starts_with("--proc-type"));
    let extra = if given {
        Vec::new()
    } else {
        vec!["--proc-type=secondary".to_string()]
    };
    with_eal_options(args, extra)
}

/// The command line of a tool that joins a running group (proc-info, dumpcap, rpmd-top):
/// the secondary role unless one is given, and `lcore` on `cpus` (e.g. `0`, or `(0-3)`)
/// unless lcores are given, so that the tool takes none of the forwarding lcores.
pub fn tool_eal_args(args: Vec<String>, lcore: u32, cpus: &str) -> Vec<String> {
    let args = secondary_by_default(args);
    // -l and -c also come glued to their value (-l0-1, -c0x3).
    let has_lcores = eal_options(&args)
        .iter()
        .any(|a| a.starts_with("-l") || a.starts_with("-c") || a.starts_with("--lcores"));
    if has_lcores {
        return args;
    }
    with_eal_options(args, vec![format!("--lcores={lcore}@{cpus}")])
}

/// Parses a DPDK port mask such as `0x3` or `3`.
pub fn parse_portmask(s: &str) -> Result<u64, String> {
    let digits = s.trim_start_matches("0x").trim_start_matches("0X");
    match u64::from_str_radix(digits, 16) {
        Ok(0) => Err(format!("port mask '{s}' selects no port")),
        Ok(m) => Ok(m),
        Err(_) => Err(format!("'{s}' is not a hexadecimal port mask such as 0x3")),
    }
}

/// The ids of the ports a mask selects, checked against the ports that exist.
pub fn ports_in_mask(mask: u64) -> Result<Vec<u16>, String> {
    let have: Vec<u16> = net::ethdev::ports().iter().map(|p| p.id()).collect();
    let want: Vec<u16> = (0..64).filter(|i| mask & (1 << i) != 0).collect();
    if let Some(missing) = want.iter().find(|p| !have.contains(p)) {
        return Err(format!(
            "port mask {mask:#x} names port {missing}, but this process has ports {have:?}: add ports with --vdev, or fix -p"
        ));
    }
    Ok(want)
}

/// Parses `--portmap "(0,1),(2,3)"`.
pub fn parse_portmap(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let bad = || format!("--portmap '{s}' must look like (0,1),(2,3)");
    let mut pairs = Vec::new();
    for part in s
        .split(')')
        .map(|p| p.trim_start_matches(',').trim())
        .filter(|p| !p.is_empty())
    {
        let inner = part.strip_prefix('(').ok_or_else(bad)?;
        let (a, b) = inner.split_once(',').ok_or_else(bad)?;
        pairs.push((
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ));
    }
    if pairs.is_empty() {
        return Err(bad());
    }
    Ok(pairs)
}

/// Prints an error and exits with status 1, releasing the group's resources first.
pub fn die(eal: &eal::Eal, msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    eal.cleanup();
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_maps() {
        assert_eq!(parse_portmask("0x3"), Ok(3));
        assert_eq!(parse_portmask("f"), Ok(15));
        assert!(parse_portmask("0").is_err());
        assert!(parse_portmask("zz").is_err());
        assert_eq!(parse_portmap("(0,1),(2,3)"), Ok(vec![(0, 1), (2, 3)]));
        assert_eq!(parse_portmap("(1, 0)"), Ok(vec![(1, 0)]));
        assert!(parse_portmap("0,1").is_err());
        assert!(parse_portmap("").is_err());
    }

    #[test]
    fn tools_and_clients_join_as_secondaries_unless_told() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            tool_eal_args(args("proc-info -- --stats"), 127, "0"),
            args("proc-info --lcores=127@0 --proc-type=secondary -- --stats")
        );
        assert_eq!(
            tool_eal_args(args("dumpcap -l3 --proc-type=primary -- -D"), 126, "0"),
            args("dumpcap -l3 --proc-type=primary -- -D")
        );
        assert_eq!(
            secondary_by_default(args("mp_client --lcores 2@0 -- -n 0")),
            args("mp_client --proc-type=secondary --lcores 2@0 -- -n 0")
        );
        // A `--proc-type` after `--` is the app's, not the EAL's.
        assert_eq!(
            secondary_by_default(args("mp_client -- --proc-type")),
            args("mp_client --proc-type=secondary -- --proc-type")
        );
    }
}
