//! The QEMU test guest (`scripts/guest`), booted by the guest tests.

use crate::Proc;
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
