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
/// printed after `what`.
pub fn forward(
    what: &str,
    (to, on): (u16, u16),
    n: u32,
    pps: u32,
    [dst, src]: [&str; 2],
) -> String {
    let line = udp_fwd(to, on, n, pps, dst, src);
    println!("{what}: {line}");
    line
}

/// Whether `line` says each of `n` frames came back intact, once, with the MACs asked for.
pub fn check_all_back(what: &str, n: u32, line: &str) {
    assert_eq!(count(line, "ok"), n as u64, "{what}: {line}");
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
