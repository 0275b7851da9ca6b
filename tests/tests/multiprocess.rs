//! The EAL's multi-process behaviour, with real processes on real hugepages.

use std::time::{Duration, Instant};
use system_tests::{prefix, remove_group_files, run, GroupGuard, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_eal_helper");

fn helper(args: &[&str]) -> Proc {
    Proc::start(HELPER, args)
}

#[test]
fn memzone_is_at_the_same_address_in_two_processes() {
    let p = prefix("mz");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &p,
        "-m",
        "16",
        "--",
        "mz-write",
        "zone_a",
        "123456789",
    ]);
    assert!(prim.expect("READY", T).contains("primary"));
    let addr = prim.expect("ADDR", T);
    let (st, out, err) = run(
        HELPER,
        &["-l", "1", "--file-prefix", &p, "--", "mz-read", "zone_a"],
        T,
    );
    assert!(st.success(), "{err}");
    assert!(out.contains("READY secondary"), "{out}");
    assert!(
        out.contains(&format!("{addr} VALUE 123456789")),
        "{out} vs {addr}"
    );
    assert!(prim.finish(T).success());
}

#[test]
fn memzones_are_listed_freed_and_reused_from_any_process() {
    let p = prefix("mzlife");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &p,
        "-m",
        "16",
        "--",
        "mz-write",
        "keep",
        "1",
    ]);
    prim.expect("ADDR", T);
    let sec = |args: &[&str]| {
        let mut a = vec!["-l", "1", "--file-prefix", &p, "--"];
        a.extend_from_slice(args);
        let (st, out, err) = run(HELPER, &a, T);
        assert!(st.success(), "{err}");
        out
    };
    let made = sec(&["mz-reserve", "big", "4000000"]);
    assert!(made.contains("RESERVED"), "{made}");
    let list = sec(&["mz-list"]);
    assert!(
        list.contains("keep:64") && list.contains("big:4000000"),
        "{list}"
    );
    assert!(sec(&["mz-reserve", "big", "10"]).contains("memzone 'big' already exists"));
    assert!(sec(&["mz-reserve", "huge", "100000000"]).contains("out of shared memory"));
    assert!(sec(&["mz-free", "big"]).contains("FREED"));
    assert!(sec(&["mz-free", "big"]).contains("NOTFOUND"));
    assert!(!sec(&["mz-list"]).contains("big"));
    // The freed space serves a new zone at the same place.
    let again = sec(&["mz-reserve", "big2", "4000000"]);
    assert_eq!(
        again.lines().last().map(|l| l.split_whitespace().nth(1)),
        made.lines().last().map(|l| l.split_whitespace().nth(1))
    );
    // IOVA-contiguous zones: within one page always; beyond, only where the pages happen to
    // be physically adjacent (PA mode), with a message that says so otherwise.
    assert!(sec(&["mz-reserve", "dma_small", "1000000", "contig"]).contains("RESERVED"));
    let big = sec(&["mz-reserve", "dma_big", "6000000", "contig"]);
    assert!(
        big.contains("RESERVED") || big.contains("no IOVA-contiguous block of 6000000 bytes"),
        "{big}"
    );
    assert!(sec(&["malloc"]).contains("MALLOC same=true zeroed=true double_free_refused=true"));
    prim.finish(T);
}

#[test]
fn ten_million_objects_through_one_ring_between_processes() {
    const TOTAL: &str = "10000000";
    let p = prefix("ring");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &p,
        "-m",
        "32",
        "--log-level",
        "warning",
        "--",
        "ring-setup",
        "mpmc",
        TOTAL,
        "4096",
    ]);
    prim.expect("SETUP", T);
    // Two producer and two consumer processes, each with two lcores (threads).
    let procs = [
        [
            "--lcores", "1@0,2@1", "--", "produce", "mpmc", "0", "5000000",
        ],
        [
            "--lcores", "3@0,4@1", "--", "produce", "mpmc", "5000000", "5000000",
        ],
        ["--lcores", "5@0,6@1", "--", "consume", "mpmc", TOTAL, ""],
        ["--lcores", "7@0,8@1", "--", "consume", "mpmc", TOTAL, ""],
    ];
    let mut running: Vec<Proc> = procs
        .iter()
        .map(|a| {
            let mut args = vec!["--file-prefix", &p, "--log-level", "warning"];
            args.extend(a.iter().filter(|s| !s.is_empty()));
            helper(&args)
        })
        .collect();
    for r in &mut running {
        assert!(
            r.finish(Duration::from_secs(300)).success(),
            "{}",
            r.stderr()
        );
    }
    assert!(prim.finish(T).success());
    let account = prim.expect("ACCOUNT", T);
    assert_eq!(
        account,
        "ACCOUNT consumed=10000000 duplicates=0 out_of_range=0 missing=0"
    );
}

#[test]
fn auto_picks_roles_and_groups_do_not_see_each_other() {
    let (a, b) = (prefix("grpa"), prefix("grpb"));
    let (_ga, _gb) = (GroupGuard(a.clone()), GroupGuard(b.clone()));
    let mut pa = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &a,
        "-m",
        "16",
        "--proc-type=auto",
        "--",
        "mz-write",
        "only_in_a",
        "7",
    ]);
    assert!(pa.expect("READY", T).contains("primary"));
    pa.expect("ADDR", T);
    let mut pb = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &b,
        "-m",
        "16",
        "--proc-type=auto",
        "--",
        "hold",
    ]);
    assert!(
        pb.expect("READY", T).contains("primary"),
        "group b has its own primary"
    );
    let (_, out, _) = run(
        HELPER,
        &[
            "-l",
            "1",
            "--file-prefix",
            &a,
            "--proc-type=auto",
            "--",
            "mz-read",
            "only_in_a",
        ],
        T,
    );
    assert!(
        out.contains("READY secondary") && out.contains("VALUE 7"),
        "{out}"
    );
    let (_, out, _) = run(
        HELPER,
        &[
            "-l",
            "1",
            "--file-prefix",
            &b,
            "--proc-type=auto",
            "--",
            "mz-read",
            "only_in_a",
        ],
        T,
    );
    assert!(
        out.contains("READY secondary") && out.contains("NOTFOUND"),
        "{out}"
    );
    let (_, out, _) = run(
        HELPER,
        &[
            "-l",
            "1",
            "--file-prefix",
            &b,
            "--",
            "ring-lookup",
            "RG_only_in_a",
        ],
        T,
    );
    assert!(out.contains("NOTFOUND"), "{out}");
    // An explicit second primary is refused, naming the running one.
    let (st, _, err) = run(
        HELPER,
        &[
            "-l",
            "1",
            "--file-prefix",
            &a,
            "--proc-type=primary",
            "--",
            "hold",
        ],
        T,
    );
    assert!(!st.success());
    assert!(
        err.contains(&format!(
            "a primary process (pid {}) of group '{a}' is already running",
            pa.pid()
        )),
        "{err}"
    );
    pa.finish(T);
    pb.finish(T);
}

#[test]
fn an_lcore_held_by_another_process_is_refused_and_freed_when_it_dies() {
    let p = prefix("lcore");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&["-l", "0", "--file-prefix", &p, "-m", "16", "--", "hold"]);
    prim.expect("READY", T);
    let (st, _, err) = run(HELPER, &["-l", "0", "--file-prefix", &p, "--", "hold"], T);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains(&format!(
            "lcore 0 is already used by the primary process {} of group '{p}'",
            prim.pid()
        )),
        "{err}"
    );
    let mut sec = helper(&["-l", "1", "--file-prefix", &p, "--", "hold"]);
    sec.expect("READY", T);
    let (st, _, err) = run(
        HELPER,
        &["--lcores", "1@0", "--file-prefix", &p, "--", "hold"],
        T,
    );
    assert!(!st.success());
    assert!(
        err.contains(&format!(
            "lcore 1 is already used by secondary process {}",
            sec.pid()
        )),
        "{err}"
    );
    sec.kill();
    // The primary frees lcore 1 as soon as it sees the connection end.
    let mut again = None;
    for _ in 0..50 {
        let mut s = helper(&["-l", "1", "--file-prefix", &p, "--", "hold"]);
        if s.wait(Duration::from_millis(300)).is_none() {
            again = Some(s);
            break;
        }
    }
    let mut again = again.expect("lcore 1 is free again after its holder died");
    again.expect("READY secondary", T);
    again.finish(T);
    prim.finish(T);
}

#[test]
fn a_dead_secondarys_mempool_cache_goes_back_to_the_pool() {
    let p = prefix("cache");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &p,
        "-m",
        "16",
        "--",
        "pool-create",
        "pool",
        "1000",
        "64",
    ]);
    prim.expect("POOL", T);
    let mut sec = helper(&[
        "-l",
        "1",
        "--file-prefix",
        &p,
        "--",
        "pool-take",
        "pool",
        "100",
    ]);
    assert_eq!(sec.expect("TAKEN", T), "TAKEN in_use=50");
    let stat = |p: &str| {
        run(
            HELPER,
            &[
                "--lcores",
                "2@0",
                "--file-prefix",
                p,
                "--",
                "pool-stat",
                "pool",
            ],
            T,
        )
        .1
    };
    let before = stat(&p);
    assert!(
        before.contains("in_use=50") && !before.contains("cached=0"),
        "{before}"
    );
    sec.kill();
    std::thread::sleep(Duration::from_millis(300));
    let after = stat(&p);
    // The 50 objects the dead process held are lost; the ones in its cache are not.
    assert!(
        after.contains("in_use=50 available=950 cached=0"),
        "{after}"
    );
    prim.finish(T);
}

#[test]
fn secondaries_stop_within_a_second_of_the_primarys_death() {
    let p = prefix("pdeath");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&["-l", "0", "--file-prefix", &p, "-m", "16", "--", "hold"]);
    prim.expect("READY", T);
    let mut sec = helper(&["-l", "1", "--file-prefix", &p, "--", "hold"]);
    sec.expect("READY", T);
    let t0 = Instant::now();
    prim.kill();
    let st = sec
        .wait(Duration::from_secs(5))
        .expect("the secondary exits on its own");
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(1));
    assert!(
        sec.stderr().contains(&format!(
            "the primary process (pid {}) of group '{p}' has exited",
            prim.pid()
        )),
        "{}",
        sec.stderr()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn a_killed_group_is_reclaimed_by_the_next_primary_but_a_live_one_is_not() {
    let p = prefix("reclaim");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&["-l", "0", "--file-prefix", &p, "-m", "16", "--", "hold"]);
    prim.expect("READY", T);
    let mut sec = helper(&["-l", "1", "--file-prefix", &p, "--", "hold"]);
    sec.expect("READY", T);
    let file = format!("/dev/hugepages/{p}map_0");
    // Freeze the secondary so it cannot notice, then kill the primary: the group is half alive.
    sec.freeze();
    prim.kill();
    let (st, _, err) = run(HELPER, &["-l", "0", "--file-prefix", &p, "--", "hold"], T);
    assert!(
        !st.success(),
        "a new primary started beside a live secondary: {err}"
    );
    assert!(
        err.contains(&format!("still running (pid {})", sec.pid())),
        "{err}"
    );
    assert!(
        std::path::Path::new(&file).exists(),
        "a live group's file is left alone"
    );
    // Now kill the rest with SIGKILL: the next primary reclaims the files and starts.
    sec.kill();
    assert!(std::path::Path::new(&file).exists());
    let mut next = helper(&["-l", "0", "--file-prefix", &p, "-m", "16", "--", "hold"]);
    assert!(next.expect("READY", T).contains("primary"));
    assert!(
        next.stderr().contains(&format!(
            "reclaimed 1 memory file(s) of a previous run of group '{p}'"
        )),
        "{}",
        next.stderr()
    );
    assert!(next.finish(T).success());
    assert!(
        !std::path::Path::new(&file).exists(),
        "a clean exit removes the files"
    );
}

#[test]
fn asking_for_more_hugepages_than_are_free_says_how_many_and_what_to_do() {
    let p = prefix("toomuch");
    let _g = GroupGuard(p.clone());
    let (st, _, err) = run(
        HELPER,
        &[
            "-l",
            "0",
            "--file-prefix",
            &p,
            "-m",
            "1000000",
            "--",
            "hold",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("requested 1000000 MiB of hugepage memory but only"),
        "{err}"
    );
    assert!(err.contains("nr_hugepages") && err.contains("-m"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn no_huge_memory_is_shared_between_processes_too() {
    let p = prefix("nohuge");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &p,
        "--no-huge",
        "-m",
        "64",
        "--",
        "mz-write",
        "z",
        "99",
    ]);
    prim.expect("READY primary", T);
    let addr = prim.expect("ADDR", T);
    assert!(std::path::Path::new(&format!("/dev/shm/rpmd.{p}map_0")).exists());
    let (st, out, err) = run(
        HELPER,
        &["-l", "1", "--file-prefix", &p, "--", "mz-read", "z"],
        T,
    );
    assert!(st.success(), "{err}");
    assert!(out.contains(&format!("{addr} VALUE 99")), "{out}");
    prim.finish(T);
}

#[test]
fn a_secondary_without_a_primary_says_so() {
    let p = prefix("noprim");
    let _g = GroupGuard(p.clone());
    let (st, _, err) = run(
        HELPER,
        &[
            "-l",
            "0",
            "--file-prefix",
            &p,
            "--proc-type=secondary",
            "--",
            "hold",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains(&format!("no primary process is running for group '{p}'")),
        "{err}"
    );
}

#[test]
fn a_taken_address_range_is_named_with_the_fix() {
    let p = prefix("collide");
    let _g = GroupGuard(p.clone());
    let mut prim = helper(&[
        "-l",
        "0",
        "--file-prefix",
        &p,
        "-m",
        "16",
        "--base-virtaddr",
        "0x7e0000000",
        "--",
        "hold",
    ]);
    assert!(prim.expect("READY", T).contains("base=0x7e0000000"));
    // Something sits at the same place in the secondary, whatever its randomisation.
    let (st, _, err) = run(
        HELPER,
        &[
            "--occupy",
            "0x7e0000000",
            "-l",
            "1",
            "--file-prefix",
            &p,
            "--",
            "hold",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("the virtual range 0x7e0000000-0x7e1000000"),
        "{err}"
    );
    assert!(
        err.contains("--base-virtaddr") && err.contains("already runs without randomisation"),
        "{err}"
    );
    // Something sits there only while randomisation is on: the re-execution gets through.
    let mut sec = helper(&[
        "--occupy-if-random",
        "0x7e0000000",
        "-l",
        "1",
        "--file-prefix",
        &p,
        "--",
        "hold",
    ]);
    assert!(
        sec.expect("READY", T).contains("secondary"),
        "{}",
        sec.stderr()
    );
    assert!(sec
        .stderr()
        .contains("re-executing without address-space randomisation"));
    sec.finish(T);
    prim.finish(T);
}

#[test]
fn bad_options_fail_cleanly() {
    let p = prefix("badopt");
    let _g = GroupGuard(p.clone());
    let cases: &[&[&str]] = &[
        &["--bogus"],
        &["-l", "0-9999"],
        &["-l", "x"],
        &["-c", "0xz"],
        &["--lcores", "(0-1@0"],
        &["-l", "0", "--main-lcore", "5"],
        &["-l", "0", "-m", "abc"],
        &["-l", "0", "--socket-mem", "0,0"],
        &["-l", "0", "--socket-mem", "0,64"],
        &["-l", "0", "--proc-type", "other"],
        &["-l", "0", "--file-prefix", "a/b"],
        &["-l", "0", "--huge-dir", "/tmp"],
        &["-l", "0", "--base-virtaddr", "zz"],
        &["-l", "0", "-a", "00:02.9"],
        &["-l", "0", "-b", "nonsense"],
        &["-l", "0", "--vdev", "bad name"],
        &["-l", "0", "--log-level", "99"],
        &["-l", "0", "--no-huge", "--huge-dir", "/dev/hugepages"],
    ];
    for c in cases {
        let mut args: Vec<&str> = c.to_vec();
        args.extend(["--file-prefix", &p, "--", "hold"]);
        if c.contains(&"--file-prefix") {
            args.truncate(args.len() - 4);
            args.extend(["--", "hold"]);
        }
        let (st, out, err) = run(HELPER, &args, T);
        assert!(!st.success(), "{c:?} was accepted: {out}");
        assert!(st.code().is_some(), "{c:?} died of a signal");
        assert!(
            !err.contains("panicked") && err.contains("error"),
            "{c:?}: {err}"
        );
    }
    remove_group_files(&p);
    let (st, out, _) = run(HELPER, &["-h"], T);
    assert!(
        st.success() && out.contains("--file-prefix") && out.contains("--proc-type"),
        "{out}"
    );
}
