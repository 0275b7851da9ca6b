//! The EAL's multi-process behaviour, with real processes on real hugepages.

use std::time::{Duration, Instant};
use system_tests::{run, Group, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_eal_helper");

fn group(test: &str) -> Group {
    Group::new(test, HELPER)
}

#[test]
fn memzone_is_at_the_same_address_in_two_processes() {
    let g = group("mz");
    let mut prim = g.start(&[
        "-l",
        "0",
        "-m",
        "16",
        "--",
        "mz-write",
        "zone_a",
        "123456789",
    ]);
    assert!(prim.expect("READY", T).contains("primary"));
    let addr = prim.expect("ADDR", T);
    let (st, out, err) = g.run(&[
        "-l",
        "1",
        "--proc-type=secondary",
        "--",
        "mz-read",
        "zone_a",
    ]);
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
    let g = group("mzlife");
    let mut prim = g.start(&["-l", "0", "-m", "16", "--", "mz-write", "keep", "1"]);
    prim.expect("ADDR", T);
    let sec = |args: &[&str]| {
        let mut a = vec!["-l", "1", "--proc-type=secondary", "--"];
        a.extend_from_slice(args);
        let (st, out, err) = g.run(&a);
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
    let addr = |out: &str| {
        out.lines()
            .last()
            .and_then(|l| l.split_whitespace().nth(1))
            .map(String::from)
    };
    assert_eq!(addr(&sec(&["mz-reserve", "big2", "4000000"])), addr(&made));
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
    let g = group("ring");
    let quiet = ["--log-level", "warning"];
    let mut prim = g.start(
        &[
            &["-l", "0", "-m", "32"][..],
            &quiet,
            &["--", "ring-setup", "mpmc", TOTAL, "4096"],
        ]
        .concat(),
    );
    prim.expect("SETUP", T);
    // Two producer and two consumer processes, each with two lcores (threads).
    let roles: [&[&str]; 4] = [
        &[
            "--lcores",
            "1@0,2@1",
            "--proc-type=secondary",
            "--",
            "produce",
            "mpmc",
            "0",
            "5000000",
        ],
        &[
            "--lcores",
            "3@0,4@1",
            "--proc-type=secondary",
            "--",
            "produce",
            "mpmc",
            "5000000",
            "5000000",
        ],
        &[
            "--lcores",
            "5@0,6@1",
            "--proc-type=secondary",
            "--",
            "consume",
            "mpmc",
            TOTAL,
        ],
        &[
            "--lcores",
            "7@0,8@1",
            "--proc-type=secondary",
            "--",
            "consume",
            "mpmc",
            TOTAL,
        ],
    ];
    let mut running: Vec<Proc> = roles
        .iter()
        .map(|r| g.start(&[&quiet[..], r].concat()))
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
    let (a, b) = (group("grpa"), group("grpb"));
    let mut pa = a.start(&[
        "-l",
        "0",
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
    let mut pb = b.start(&["-l", "0", "-m", "16", "--proc-type=auto", "--", "hold"]);
    assert!(
        pb.expect("READY", T).contains("primary"),
        "group b has its own primary"
    );
    let (_, out, _) = a.run(&["-l", "1", "--proc-type=auto", "--", "mz-read", "only_in_a"]);
    assert!(
        out.contains("READY secondary") && out.contains("VALUE 7"),
        "{out}"
    );
    let (_, out, _) = b.run(&["-l", "1", "--proc-type=auto", "--", "mz-read", "only_in_a"]);
    assert!(
        out.contains("READY secondary") && out.contains("NOTFOUND"),
        "{out}"
    );
    let (_, out, _) = b.run(&[
        "-l",
        "1",
        "--proc-type=secondary",
        "--",
        "ring-lookup",
        "RG_only_in_a",
    ]);
    assert!(out.contains("NOTFOUND"), "{out}");
    // An explicit second primary is refused, naming the running one.
    let (st, _, err) = a.run(&["-l", "1", "--proc-type=primary", "--", "hold"]);
    assert!(!st.success());
    let want = format!(
        "a primary process (pid {}) of group '{}' is already running",
        pa.pid(),
        a.prefix
    );
    assert!(err.contains(&want), "{err}");
    pa.finish(T);
    pb.finish(T);
}

#[test]
fn an_lcore_held_by_another_process_is_refused_and_freed_when_it_dies() {
    let g = group("lcore");
    let mut prim = g.start(&["-l", "0", "-m", "16", "--", "hold"]);
    prim.expect("READY", T);
    let (st, _, err) = g.run(&["-l", "0", "--proc-type=secondary", "--", "hold"]);
    assert_eq!(st.code(), Some(1));
    let want = format!(
        "lcore 0 is already used by the primary process {} of group '{}'",
        prim.pid(),
        g.prefix
    );
    assert!(err.contains(&want), "{err}");
    let mut sec = g.start(&["-l", "1", "--proc-type=secondary", "--", "hold"]);
    sec.expect("READY", T);
    let (st, _, err) = g.run(&["--lcores", "1@0", "--proc-type=secondary", "--", "hold"]);
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
    let mut again = (0..50)
        .map(|_| g.start(&["-l", "1", "--proc-type=secondary", "--", "hold"]))
        .find_map(|mut s| s.wait(Duration::from_millis(300)).is_none().then_some(s))
        .expect("lcore 1 is free again after its holder died");
    again.expect("READY secondary", T);
    again.finish(T);
    prim.finish(T);
}

#[test]
fn a_dead_secondarys_mempool_cache_goes_back_to_the_pool() {
    let g = group("cache");
    let mut prim = g.start(&[
        "-l",
        "0",
        "-m",
        "16",
        "--",
        "pool-create",
        "pool",
        "1000",
        "64",
    ]);
    prim.expect("POOL", T);
    let mut sec = g.start(&[
        "-l",
        "1",
        "--proc-type=secondary",
        "--",
        "pool-take",
        "pool",
        "100",
    ]);
    assert_eq!(sec.expect("TAKEN", T), "TAKEN in_use=50");
    let stat = || {
        g.run(&[
            "--lcores",
            "2@0",
            "--proc-type=secondary",
            "--",
            "pool-stat",
            "pool",
        ])
        .1
    };
    let before = stat();
    assert!(
        before.contains("in_use=50") && !before.contains("cached=0"),
        "{before}"
    );
    sec.kill();
    // The 50 objects the dead process held are lost; the ones in its cache are not, once
    // the primary has seen it die.
    let after = system_tests::eventually(stat, |s| s.contains("cached=0"));
    assert!(
        after.contains("in_use=50 available=950 cached=0"),
        "{after}"
    );
    prim.finish(T);
}

#[test]
fn secondaries_stop_within_a_second_of_the_primarys_death() {
    let g = group("pdeath");
    let mut prim = g.start(&["-l", "0", "-m", "16", "--", "hold"]);
    prim.expect("READY", T);
    let mut sec = g.start(&["-l", "1", "--proc-type=secondary", "--", "hold"]);
    sec.expect("READY", T);
    let t0 = Instant::now();
    prim.kill();
    let st = sec
        .wait(Duration::from_secs(5))
        .expect("the secondary exits on its own");
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(1));
    let want = format!(
        "the primary process (pid {}) of group '{}' has exited",
        prim.pid(),
        g.prefix
    );
    assert!(sec.stderr().contains(&want), "{}", sec.stderr());
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn a_killed_group_is_reclaimed_by_the_next_primary_but_a_live_one_is_not() {
    let g = group("reclaim");
    let mut prim = g.start(&["-l", "0", "-m", "16", "--", "hold"]);
    prim.expect("READY", T);
    let mut sec = g.start(&["-l", "1", "--proc-type=secondary", "--", "hold"]);
    sec.expect("READY", T);
    let file = format!("/dev/hugepages/{}map_0", g.prefix);
    let exists = || std::path::Path::new(&file).exists();
    // Freeze the secondary so it cannot notice, then kill the primary: the group is half alive.
    sec.freeze();
    prim.kill();
    let (st, _, err) = g.run(&["-l", "0", "--", "hold"]);
    assert!(
        !st.success(),
        "a new primary started beside a live secondary: {err}"
    );
    assert!(
        err.contains(&format!("still running (pid {})", sec.pid())),
        "{err}"
    );
    assert!(exists(), "a live group's file is left alone");
    // Now kill the rest with SIGKILL: the next primary reclaims the files and starts.
    sec.kill();
    assert!(exists());
    let mut next = g.start(&["-l", "0", "-m", "16", "--", "hold"]);
    assert!(next.expect("READY", T).contains("primary"));
    let want = format!(
        "reclaimed 1 memory file(s) of a previous run of group '{}'",
        g.prefix
    );
    next.expect_stderr(&want, T);
    assert!(next.finish(T).success());
    assert!(!exists(), "a clean exit removes the files");
    let rundir = format!("/var/run/rpmd/{}", g.prefix);
    assert!(
        !std::path::Path::new(&rundir).exists(),
        "and the runtime dir"
    );
}

#[test]
fn asking_for_more_hugepages_than_are_free_says_how_many_and_what_to_do() {
    let g = group("toomuch");
    let (st, _, err) = g.run(&["-l", "0", "-m", "1000000", "--", "hold"]);
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
    let g = group("nohuge");
    let mut prim = g.start(&[
        "-l",
        "0",
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
    assert!(std::path::Path::new(&format!("/dev/shm/rpmd.{}map_0", g.prefix)).exists());
    let (st, out, err) = g.run(&["-l", "1", "--proc-type=secondary", "--", "mz-read", "z"]);
    assert!(st.success(), "{err}");
    assert!(out.contains(&format!("{addr} VALUE 99")), "{out}");
    prim.finish(T);
}

#[test]
fn a_secondary_without_a_primary_says_so() {
    let g = group("noprim");
    let (st, _, err) = g.run(&["-l", "0", "--proc-type=secondary", "--", "hold"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains(&format!(
            "no primary process is running for group '{}'",
            g.prefix
        )),
        "{err}"
    );
    // The failed start leaves no runtime directory behind.
    let dir = eal::runtime::runtime_dir(&g.prefix);
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[test]
fn a_taken_address_range_is_named_with_the_fix() {
    let g = group("collide");
    let mut prim = g.start(&[
        "-l",
        "0",
        "-m",
        "16",
        "--base-virtaddr",
        "0x7e0000000",
        "--",
        "hold",
    ]);
    assert!(prim.expect("READY", T).contains("base=0x7e0000000"));
    // Something sits at the same place in the secondary, whatever its randomisation.
    // (--occupy goes before the EAL options, so this one spells out the prefix.)
    let (st, _, err) = run(
        HELPER,
        &[
            "--occupy",
            "0x7e0000000",
            "-l",
            "1",
            "--proc-type=secondary",
            "--file-prefix",
            &g.prefix,
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
    let mut sec = Proc::start(
        HELPER,
        &[
            "--occupy-if-random",
            "0x7e0000000",
            "-l",
            "1",
            "--proc-type=secondary",
            "--file-prefix",
            &g.prefix,
            "--",
            "hold",
        ],
    );
    assert!(
        sec.expect("READY", T).contains("secondary"),
        "{}",
        sec.stderr()
    );
    sec.expect_stderr("re-executing without address-space randomisation", T);
    sec.finish(T);
    prim.finish(T);
}

#[test]
fn bad_options_fail_cleanly() {
    let g = group("badopt");
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
        // A later --file-prefix wins over the group's, so the bad one is what is parsed.
        let (st, out, err) = g.run(&[c, &["--", "hold"][..]].concat());
        assert!(!st.success(), "{c:?} was accepted: {out}");
        assert!(st.code().is_some(), "{c:?} died of a signal");
        assert!(
            !err.contains("panicked") && err.contains("error"),
            "{c:?}: {err}"
        );
    }
    let (st, out, _) = run(HELPER, &["-h"], T);
    assert!(
        st.success() && out.contains("--file-prefix") && out.contains("--proc-type"),
        "{out}"
    );
}
