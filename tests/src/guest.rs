//! The QEMU test guest (`scripts/guest`), booted by the guest tests.

use crate::{count, udp_fwd, Proc};
use std::path::PathBuf;

/// The workspace's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// Boots the guest with `script` (under tests/guest), NICs `nics` (`scripts/guest` syntax)
/// and further `scripts/guest run` options `opts`.
pub fn boot_with(script: &str, nics: &[&str], opts: &[&str]) -> Proc {
    let guest = root().join("scripts/guest");
    let script = root().join("tests/guest").join(script);
    let mut args = vec!["run".to_string(), "--timeout".into(), "400".into()];
    for n in nics {
        args.push("--nic".into());
        args.push(n.to_string());
    }
    args.extend(opts.iter().map(|o| o.to_string()));
    args.push(script.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // Its own process group: a failing test kills QEMU too, not only the script.
    Proc::start_group(&guest.to_string_lossy(), &refs)
}

/// Sends `n` frames at `pps` to the guest on UDP port `to` (`port_helper udp-fwd`) and returns
/// the result line for those coming back on `on` with MACs `[dst, src]` ("-": not checked),
/// with `host_dropped=N` added (frames dropped at the socket on `to`, see [`udp_drops`]),
/// printed after `what`.
pub fn forward(
    what: &str,
    (to, on): (u16, u16),
    n: u32,
    pps: u32,
    [dst, src]: [&str; 2],
) -> String {
    let before = udp_drops(to);
    let line = udp_fwd(to, on, n, pps, dst, src);
    let line = format!("{line} host_dropped={}", udp_drops(to) - before);
    println!("{what}: {line}");
    line
}

/// Frames the host's kernel dropped at the UDP socket on local port `port` because its
/// receive buffer was full (the `drops` column of /proc/net/udp; 0 if there is no such socket).
pub fn udp_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp is readable");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1)?.ends_with(&local).then_some(())?;
            fields.last()?.parse::<u64>().ok()
        })
        .sum()
}

/// Whether `line` ([`forward`]'s) says each of `n` frames came back intact, once, with the
/// MACs asked for, but for frames the host dropped at the socket that feeds the guest's NIC.
/// Those are a guest that did not run for a while (TCG on a busy host): its NIC had no free
/// RX buffer, so QEMU left frames in the socket until it overflowed (a QEMU stopped for 0.3 s
/// loses about 500 frames at 2,000/s). They must be all that is missing and at most 10 % of
/// `n`; a frame lost in the guest fails.
pub fn check_all_back(what: &str, n: u32, line: &str) {
    let host_dropped = count(line, "host_dropped");
    assert!(
        host_dropped <= n as u64 / 10,
        "{what}: {line}: the guest did not take frames for too long"
    );
    assert_eq!(count(line, "ok") + host_dropped, n as u64, "{what}: {line}");
    assert_eq!(
        count(line, "bad_mac") + count(line, "dup"),
        0,
        "{what}: {line}"
    );
}

/// [`forward`], then [`check_all_back`].
pub fn forwards_all(what: &str, ports: (u16, u16), n: u32, pps: u32, macs: [&str; 2]) {
    check_all_back(what, n, &forward(what, ports, n, pps, macs));
}
