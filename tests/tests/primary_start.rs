//! A primary killed after each store its start-up (and its exit) makes to shared memory,
//! for every such store in turn (`RPMD_FAULT_POINT=store@N`, `eal::store_point!`): the
//! config reset, its header, the memory segments, IOVA table, heap, lcore claims and the
//! magic that publishes it. After each death the next primary of the prefix starts (its
//! config reset and the hugepage files the dead one left reclaimed), a secondary joins it
//! and allocates and frees shared memory, and once the group is gone no hugepage file of
//! the prefix is left (ARCHITECTURE.md, "Testing the crash model"). Needs
//! `--features rpmd-eal/fault-points`.

use std::os::unix::process::ExitStatusExt;
use system_tests::{group_files, Group, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_eal_helper");
/// More stores than any start-up makes: the loop must end before.
const MAX_STORES: u64 = 200;

#[test]
fn a_primary_killed_at_any_store_of_its_start_up_leaves_a_prefix_the_next_primary_starts() {
    system_tests::require_fault_points("this test kills at store points");
    let g = Group::new("pstart", HELPER);
    let eal = ["--file-prefix", g.prefix.as_str(), "-l", "0", "-m", "32"];
    for n in 1..=MAX_STORES {
        // A primary that lists the memzones and exits, killed after its nth store.
        let point = format!("store@{n}");
        let mut p = Proc::start_armed(HELPER, &[&eal[..], &["--", "mz-list"]].concat(), &point);
        let status = p.finish(T);
        if status.success() {
            let killed = n - 1;
            println!("a primary's start-up and exit: {killed} stores, each killed in turn");
            assert!(
                killed > 5,
                "only {killed} stores counted: are the start-up's store points there?"
            );
            assert!(
                group_files(&g.prefix).is_empty(),
                "hugepage files left: {:?}",
                group_files(&g.prefix)
            );
            return;
        }
        let err = p.stderr();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{status}; stderr: {err}"
        );
        assert!(
            err.contains("fault point store hit"),
            "killed, but not at store {n}: {err}"
        );
        // The next primary starts, and a secondary of its group allocates and frees.
        let mut next = g.start(&["-l", "0", "-m", "32", "--", "hold"]);
        next.expect("READY primary", T);
        let (status, out, err) =
            g.run(&["--proc-type=secondary", "--lcores", "1@0", "--", "malloc"]);
        assert!(
            status.success(),
            "after a kill at store {n}: {status}; {err}"
        );
        assert!(
            out.contains("MALLOC same=true zeroed=true double_free_refused=true"),
            "after a kill at store {n}: {out}"
        );
        let status = next.finish(T);
        assert!(
            status.success(),
            "after a kill at store {n}: the next primary: {status}; {}",
            next.stderr()
        );
    }
    panic!("a primary's start-up made more than {MAX_STORES} stores");
}
