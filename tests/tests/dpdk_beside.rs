//! A group of ours and DPDK's processes on one host (Debian's `dpdk-testpmd` and
//! `dpdk-proc-info`, installed by `scripts/setup --peer`): a DPDK primary starting deletes
//! the hugepage files it can lock, and must find ours locked; ours must leave DPDK's alone.

use std::time::Duration;
use system_tests::{
    dpdk_testpmd, proc_info_json, remove_group_files, run, workspace_bin, Group, Proc, T,
};

/// One test at a time: DPDK takes 256 MiB of hugepages each run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// DPDK's testpmd as the primary of group `prefix`, interactive, with one net_null port; its
/// hugepage files stay while it runs, as a DPDK app's do.
fn dpdk_primary(prefix: &str) -> Proc {
    let mut p = dpdk_testpmd(&[
        "--lcores",
        "0@0,1@0",
        "-m",
        "256",
        "--no-pci",
        &format!("--file-prefix={prefix}"),
        "--vdev",
        "net_null0",
        "--",
        "-i",
        "--total-num-mbufs=2048",
    ]);
    p.expect("Checking link statuses", T);
    p.expect("Done", T);
    p
}

fn quit(mut p: Proc) {
    p.send("quit");
    p.expect("Bye", T);
    p.finish(T);
}

#[test]
fn our_group_survives_dpdk_primaries_starting_and_stopping_beside_it() {
    let _s = serial();
    let g = Group::new("besidedpdk", &workspace_bin("testpmd"));
    let mut ours = g.start_on_rings(&[]);
    ours.expect("Start automatic packet forwarding", T);
    let dpdk = "dpdk_beside_ours";
    for _ in 0..2 {
        quit(dpdk_primary(dpdk));
    }
    remove_group_files(dpdk);
    // A secondary of ours joins after them: every memory file is still there.
    let info = proc_info_json(&g, &["--show-mempool"]);
    assert!(
        info["mempools"].as_array().is_some_and(|m| !m.is_empty()),
        "{info}"
    );
    ours.stop_ok();
}

#[test]
fn a_dpdk_group_survives_ours_starting_and_stopping_beside_it() {
    let _s = serial();
    let dpdk = "dpdk_beside_dpdk";
    let pmd = dpdk_primary(dpdk);
    let g = Group::new("dpdkbeside", &workspace_bin("testpmd"));
    for _ in 0..2 {
        let mut ours = g.start_on_rings(&[]);
        ours.expect("Start automatic packet forwarding", T);
        ours.stop_ok();
    }
    // DPDK's own secondary still joins its group.
    let (st, out, err) = run(
        "dpdk-proc-info",
        &[&format!("--file-prefix={dpdk}"), "--", "--stats"],
        Duration::from_secs(60),
    );
    assert!(st.success(), "dpdk-proc-info: {out} {err}");
    assert!(out.contains("port"), "{out}");
    quit(pmd);
    remove_group_files(dpdk);
}
