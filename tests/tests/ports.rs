//! Ports with real processes: l2fwd over net_ring and over net_tap, queue ownership
//! across processes, and the port API's refusals.

use system_tests::{workspace_bin, Group, NetNs, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");

fn l2fwd_group(test: &str) -> Group {
    Group::new(test, &workspace_bin("l2fwd"))
}

/// Runs port_helper as a secondary of `g` on lcore `lcore` (mapped to CPU 0).
fn helper(g: &Group, lcore: u32, args: &[&str]) -> Proc {
    g.secondary(HELPER, &format!("{lcore}@0"), args)
}

#[test]
fn l2fwd_forwards_mixed_frames_over_net_ring_and_returns_every_mbuf() {
    let g = l2fwd_group("l2ring");
    let mut l2 = g.start_l2fwd_on_rings("1");
    let mut col = helper(
        &g,
        2,
        &[
            "collect",
            "net_ring1",
            "5000",
            "30",
            "02:00:00:00:00:01",
            "02:00:00:00:01:01",
        ],
    );
    let mut col_back = helper(
        &g,
        3,
        &[
            "collect",
            "net_ring0",
            "1000",
            "30",
            "02:00:00:00:00:00",
            "02:00:00:00:01:00",
        ],
    );
    col.expect("COLLECTING", T);
    col_back.expect("COLLECTING", T);
    let mut inj = helper(&g, 4, &["inject", "net_ring0", "5000"]);
    let mut inj_back = helper(&g, 5, &["inject", "net_ring1", "1000"]);
    assert_eq!(
        col.expect("COLLECTED", T),
        format!(
            "COLLECTED ok=5000 bad=0 dup=0 bad_mac=0 missing=0 bytes={}",
            bytes(5000)
        )
    );
    assert_eq!(
        col_back.expect("COLLECTED", T),
        format!(
            "COLLECTED ok=1000 bad=0 dup=0 bad_mac=0 missing=0 bytes={}",
            bytes(1000)
        )
    );
    // Every injected mbuf came back to its pool once the collectors freed it.
    assert_eq!(inj.expect("POOL", T), "POOL in_use=0");
    assert_eq!(inj_back.expect("POOL", T), "POOL in_use=0");
    let mut pool = helper(&g, 6, &["pool", "mbuf_pool"]);
    assert_eq!(
        pool.expect("POOL", T),
        "POOL in_use=0",
        "l2fwd holds no buffer once traffic stops"
    );
    l2.stop_ok();
    let out = l2.stdout().join("\n");
    assert!(
        out.contains("Total packets sent:               6000"),
        "{out}"
    );
    assert!(
        out.contains("Total packets received:           6000"),
        "{out}"
    );
    assert!(
        out.contains("Total packets dropped:               0"),
        "{out}"
    );
}

/// Bytes of frames 0..n as port_helper builds them.
fn bytes(n: u64) -> u64 {
    (0..n).map(|i| 60 + (i * 397) % 1455).sum()
}

/// Starts l2fwd of group `g` inside `ns` on two TAP ports (interfaces `a` and `b`) and
/// waits until both links are up.
fn l2fwd_on_taps(ns: &NetNs, g: &Group, a: &str, b: &str) -> Proc {
    let mut l2 = g.start_on_taps(ns, [a, b], &["-p", "0x3", "-T", "0"]);
    l2.expect("Port 1 Link up", T);
    l2
}

/// Starts a receiver of `n` frames on interface `to` (MACs as l2fwd rewrites them for its
/// port 1) and waits until it listens.
fn tap_receiver(ns: &NetNs, to: &str, n: u32) -> Proc {
    let n = n.to_string();
    let mut recv = ns.start(
        HELPER,
        &[
            "tap-recv",
            to,
            &n,
            "30",
            "02:00:00:00:00:01",
            "02:00:00:00:01:01",
        ],
    );
    recv.expect("LISTENING", T);
    recv
}

fn stop(mut p: Proc) -> Vec<String> {
    p.stop_ok();
    p.stdout()
}

#[test]
fn l2fwd_forwards_real_frames_between_tap_interfaces() {
    let g = l2fwd_group("l2tap");
    let ns = NetNs::new("t");
    let l2 = l2fwd_on_taps(&ns, &g, "tt0", "tt1");
    let mut recv = tap_receiver(&ns, "tt1", 3000);
    let mut send = ns.start(HELPER, &["tap-send", "tt0", "3000", "20000"]);
    send.expect("SENT 3000", T);
    let got = recv.expect("RECEIVED", T);
    assert!(
        got.starts_with("RECEIVED ok=3000 dup=0 bad_mac=0 missing=0 other=0 "),
        "{got}"
    );
    assert!(stop(l2)
        .join("\n")
        .contains("Total packets sent:               3000"));
}

#[test]
fn two_groups_forward_side_by_side_and_a_held_tap_is_refused_naming_its_group() {
    let ns = NetNs::new("g");
    let (ga, gb) = (l2fwd_group("sidea"), l2fwd_group("sideb"));
    let la = l2fwd_on_taps(&ns, &ga, "ga0", "ga1");
    let lb = l2fwd_on_taps(&ns, &gb, "gb0", "gb1");

    // Both groups forward at the same time, each its own frames only.
    let mut ra = tap_receiver(&ns, "ga1", 2000);
    let mut rb = tap_receiver(&ns, "gb1", 2000);
    let mut sa = ns.start(HELPER, &["tap-send", "ga0", "2000", "10000"]);
    let mut sb = ns.start(HELPER, &["tap-send", "gb0", "2000", "10000"]);
    sa.expect("SENT 2000", T);
    sb.expect("SENT 2000", T);
    for r in [&mut ra, &mut rb] {
        let got = r.expect("RECEIVED", T);
        assert!(
            got.starts_with("RECEIVED ok=2000 dup=0 bad_mac=0 missing=0 other=0 "),
            "{got}"
        );
    }

    // A third group asking for group A's interface is told who holds it; A is unharmed.
    let gc = l2fwd_group("sidec");
    let (st, _, err) = ns.run(
        &workspace_bin("l2fwd"),
        &[
            "-l",
            "0-1",
            "-m",
            "64",
            "--file-prefix",
            &gc.prefix,
            "--vdev",
            "net_tap0,iface=ga0",
            "--",
            "-p",
            "0x1",
        ],
    );
    assert_eq!(st.code(), Some(1), "{err}");
    let want = format!(
        "TAP interface ga0 is already in use by process {} (l2fwd, --file-prefix={})",
        la.pid(),
        ga.prefix
    );
    assert!(err.contains(&want), "{err}");
    let mut ra = tap_receiver(&ns, "ga1", 500);
    ns.start(HELPER, &["tap-send", "ga0", "500", "10000"])
        .expect("SENT 500", T);
    assert!(ra
        .expect("RECEIVED", T)
        .starts_with("RECEIVED ok=500 dup=0"));
    for (l2, sent) in [(la, "2500"), (lb, "2000")] {
        let out = stop(l2).join("\n");
        assert!(
            out.contains(&format!("Total packets sent:               {sent}")),
            "{out}"
        );
    }
}

#[test]
fn a_second_poller_of_a_queue_is_refused_with_the_holder_named() {
    // l2fwd polls RX queue 0 of both ports; another process asks for one of them.
    // (That a dead process's queues can be taken again is shown by the symmetric_mp test.)
    let g = l2fwd_group("qown");
    let mut l2 = g.start_l2fwd_on_rings("0");
    let mut other = helper(&g, 2, &["take", "net_ring0", "0"]);
    let busy = other.expect("BUSY", T);
    assert!(
        busy.contains(&format!(
            "RX queue 0 is already polled by process {}",
            l2.pid()
        )),
        "{busy}"
    );
    l2.stop_ok();
}

#[test]
fn the_port_api_refuses_misuse_with_reasons() {
    let g = Group::new("apierr", HELPER);
    let mut p = g.start(&[
        "-l",
        "0",
        "-m",
        "64",
        "--vdev",
        "net_ring0",
        "--",
        "api-errors",
    ]);
    assert!(p.finish(T).success(), "{}", p.stderr());
    let out = p.stdout().join("\n");
    for want in [
        "start unconfigured: port 0: start is not possible while the port is not configured; configure it and set up its queues first",
        "rx setup unconfigured: port 0: setting up queues is not possible while the port is not configured; configure it first",
        "configure 0 queues: port 0: at most 16 RX queues",
        "configure 99 queues: port 0: at most 16 RX queues",
        "configure 1/1: accepted",
        "start without queues: port 'net_ring0': RX queue 0 is not set up: call rx_queue_setup first",
        "rx queue 5: port 0: RX queue 5 does not exist (the port has 1)",
        "no port 9: no port 9: this group has 1 port(s)",
        "mtu 100000: port 'net_ring0': MTU 100000 is outside 68..=9000",
        "multicast mac: port 'net_ring0': 01:00:00:00:00:01 is a multicast address, not valid for a port",
        "33rd mac_addr_add: port 'net_ring0': all 32 extra MAC addresses are in use: remove one (mac_addr_remove) before adding 02:00:00:00:00:20",
        "mac_addr_remove unknown: port 'net_ring0': 02:00:00:00:00:63 was not added to the port (its own address cannot be removed)",
        "unicast in mc list: port 'net_ring0': 02:00:00:00:00:01 is not a multicast address (add unicast ones with mac_addr_add)",
        "mc list: accepted",
        "mac filters: 33",
        "start 1/1: accepted",
        "rx setup started: port 0: setting up queues is not possible while the port is started; stop it first",
        "tx setup started: port 0: setting up queues is not possible while the port is started; stop it first",
        "configure started: port 0: configure is not possible while the port is started; stop it first",
    ] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
}

#[test]
fn l2fwd_refuses_bad_input_clearly() {
    let g = l2fwd_group("l2bad");
    let two = [
        "-l",
        "0-1",
        "-m",
        "64",
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_ring1",
        "--",
    ];
    let cases: &[(&[&str], &str)] = &[
        (&["-l", "0-1", "-m", "64", "--vdev", "net_bogus0", "--", "-p", "0x1"], "no driver for virtual device 'net_bogus0': known drivers are net_ring, net_null, net_tap"),
        (&["-l", "0-1", "-m", "64", "--vdev", "net_null0,colour=red", "--", "-p", "0x1"], "unknown argument 'colour' (this driver takes: size)"),
        (&[&two[..], &["-p", "0x4"]].concat(), "port mask 0x4 names port 2, but this process has ports [0, 1]"),
        (&[&two[..], &["-p", "zz"]].concat(), "'zz' is not a hexadecimal port mask"),
        (&[&two[..], &["-p", "0x1"]].concat(), "an even number is needed"),
        (&[&two[..], &["-p", "0x3", "-q", "0"]].concat(), "-q"),
        (&[&two[..], &["-p", "0x3", "--portmap", "(0,5)"]].concat(), "--portmap pair (0,5) uses a port outside the port mask"),
        (&[&two[..], &["-p", "0x3", "--bogus"]].concat(), "--bogus"),
    ];
    for (args, want) in cases {
        let (st, _, err) = g.run(args);
        assert_eq!(st.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{args:?}: want '{want}' in: {err}"
        );
    }
}

#[test]
fn symmetric_mp_shares_ports_and_a_dead_secondarys_queues_are_taken_again() {
    let g = Group::new("symmp", &workspace_bin("symmetric_mp"));
    let ports = ["--vdev", "net_ring0", "--vdev", "net_ring1"];
    let mut p0 = g.start(
        &[
            &["-l", "0", "-m", "128"][..],
            &ports,
            &["--", "-p", "0x3", "--num-procs", "2", "--proc-id", "0"],
        ]
        .concat(),
    );
    p0.expect("Finished Process Init", T);
    let sec_args = [
        "--lcores",
        "1@1",
        "--proc-type=secondary",
        "--",
        "-p",
        "0x3",
        "--num-procs",
        "2",
        "--proc-id",
        "1",
    ];
    let mut p1 = g.start(&sec_args);
    p1.expect("Finished Process Init", T);
    // A second process 1 is refused: queue 1 is taken.
    let (st, _, err) = g.run(
        &[
            &["--lcores", "2@1", "--proc-type=secondary"][..],
            &sec_args[3..],
        ]
        .concat(),
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains(&format!(
            "RX queue 1 is already polled by process {}",
            p1.pid()
        )),
        "{err}"
    );

    let round = |n: &str| {
        let mut col = helper(&g, 5, &["collect", "net_ring1", n, "30", "-", "-", "2"]);
        col.expect("COLLECTING", T);
        let mut inj = helper(&g, 6, &["inject", "net_ring0", n, "2"]);
        let spread = inj.expect("INJECTED", T);
        let got = col.expect("COLLECTED", T);
        assert_eq!(inj.expect("POOL", T), "POOL in_use=0");
        (spread, got)
    };
    let (spread, got) = round("4000");
    assert!(
        got.starts_with("COLLECTED ok=4000 bad=0 dup=0 bad_mac=0 missing=0"),
        "{got}"
    );
    // RSS spread the flows over both queues, so both processes forwarded.
    let per_q = system_tests::bracketed_counts(&spread);
    assert!(
        per_q.len() == 2 && per_q.iter().all(|c| *c > 1000),
        "{spread}"
    );

    // Kill process 1: process 0 keeps forwarding its share, and queue 1 can be taken again.
    p1.kill();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut p1b = g.start(&sec_args);
    p1b.expect("Finished Process Init", T);
    let (_, got) = round("4000");
    assert!(
        got.starts_with("COLLECTED ok=4000 bad=0 dup=0 bad_mac=0 missing=0"),
        "{got}"
    );

    for p in [&mut p1b, &mut p0] {
        p.stop_ok();
    }
    // Each process's counts add up to what it received on queue 0 or 1.
    let rx_total = |p: &mut Proc| -> u64 {
        p.stdout()
            .iter()
            .filter_map(|l| {
                l.split("RX - ")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    assert_eq!(
        rx_total(&mut p0),
        per_q[0] * 2,
        "process 0 forwarded its queue's share in both rounds"
    );
}

#[test]
fn ports_attached_and_detached_while_running_are_seen_by_secondaries() {
    let g = Group::new("hotplug", &workspace_bin("testpmd"));
    let mut pmd = g.start_on_rings(&["-i"]);
    pmd.expect("Start automatic packet forwarding", T);
    let mut watch = helper(&g, 2, &["watch-ports"]);
    watch.expect("WATCHING PORTS", T);

    // Attached from the primary's command line, then at a secondary's request.
    pmd.send("port attach net_ring2");
    pmd.expect("Port 2 is attached. Now total ports is 3", T);
    assert_eq!(watch.expect("PORT ", T), "PORT ADDED 2 net_ring2");
    let mut h = helper(&g, 3, &["hotplug", "attach", "net_ring3"]);
    assert_eq!(h.expect("ATTACHED", T), "ATTACHED 3 net_ring3");
    assert_eq!(watch.expect("PORT ", T), "PORT ADDED 3 net_ring3");

    // A port being forwarded stays; a device no driver takes is refused.
    pmd.send("port detach 0");
    let refused = pmd.expect("Failed to detach port 0", T);
    let want = format!("while process {} polls its RX queue 0", pmd.pid());
    assert!(refused.contains(&want), "{refused}");
    pmd.send("port attach net_bogus0");
    let refused = pmd.expect("Failed to attach port net_bogus0", T);
    assert!(refused.contains("known drivers are"), "{refused}");

    // Detached from either side; everyone forgets them.
    pmd.send("port detach 2");
    pmd.expect("Port 2 is detached. Now total ports is 3", T);
    assert_eq!(watch.expect("PORT ", T), "PORT REMOVED 2");
    let mut h = helper(&g, 4, &["hotplug", "detach", "3"]);
    assert_eq!(h.expect("DETACHED", T), "DETACHED 3");
    assert_eq!(watch.expect("PORT ", T), "PORT REMOVED 3");
    let (st, out, err) = system_tests::run(
        &workspace_bin("dumpcap"),
        &["--file-prefix", g.prefix.as_str(), "-D"],
        T,
    );
    assert!(st.success(), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "0. net_ring0 (net_ring, started)",
            "1. net_ring1 (net_ring, started)"
        ]
    );
    pmd.send("quit");
    assert!(pmd.finish(T).success(), "{}", pmd.stderr());
}

#[test]
fn testpmd_forwards_on_null_ports_and_reports_on_exit() {
    let g = Group::new("tpmd", &workspace_bin("testpmd"));
    let base = [
        "-l",
        "0-1",
        "-m",
        "128",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
        "--",
    ];
    for mode in ["io", "mac", "macswap", "txonly", "rxonly"] {
        // The measuring options of DPDK's testpmd, on one mode.
        let record: &[&str] = if mode == "io" {
            &["--record-core-cycles", "--record-burst-stats"]
        } else {
            &[]
        };
        let mut p = g.start(
            &[
                &base[..],
                &["--forward-mode", mode, "--stats-period", "1"],
                record,
            ]
            .concat(),
        );
        p.expect("Start automatic packet forwarding", T);
        p.expect("  Rx-pps", T);
        p.signal(libc::SIGINT);
        assert!(p.finish(T).success(), "{mode}: {}", p.stderr());
        let out = p.stdout().join("\n");
        let acc: Vec<u64> = out
            .lines()
            .skip_while(|l| !l.contains("Accumulated forward statistics"))
            .skip(1)
            .take(2)
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect();
        assert_eq!(acc.len(), 2, "{mode}: {out}");
        let (rx, tx) = (acc[0], acc[1]);
        if mode == "io" {
            // A null port always has a full burst: DPDK prints the same for its own.
            for dir in ["RX", "TX"] {
                let want = format!("  {dir}-bursts : ");
                let line = out.lines().find(|l| l.starts_with(&want));
                assert!(
                    line.is_some_and(|l| l.ends_with(" [0% of 0 pkts + 100% of 32 pkts]")),
                    "{out}"
                );
            }
            assert!(out.contains("  CPU cycles/packet="), "{out}");
        }
        match mode {
            "rxonly" => assert!(rx > 0 && tx == 0, "{mode}: rx {rx} tx {tx}"),
            "txonly" => assert!(rx == 0 && tx > 0, "{mode}: rx {rx} tx {tx}"),
            _ => assert!(rx > 0 && tx > 0 && tx <= rx, "{mode}: rx {rx} tx {tx}"),
        }
    }
    for (bad, says) in [
        (
            &["--num-procs=2", "--proc-id=2"][..],
            "--proc-id 2 must be below --num-procs 2",
        ),
        (
            &["--rxq=3", "--txq=3", "--num-procs=2", "--proc-id=0"],
            "3 queues cannot be shared evenly by 2 processes",
        ),
    ] {
        let (st, _, err) = g.run(&[&base[..], bad].concat());
        assert!(st.code() == Some(1) && err.contains(says), "{bad:?}: {err}");
    }
    // DPDK's multi-process split: the primary forwards queue 0 of each port, a secondary
    // queue 1, and a secondary given other queue counts than the primary's is refused.
    let mp = ["--rxq=2", "--txq=2", "--num-procs=2"];
    let mut p0 = g.start(&[&base[..], &mp, &["--proc-id=0"]].concat());
    p0.expect("Start automatic packet forwarding", T);
    let sec = ["--lcores", "2@0,3@1", "--proc-type=secondary", "--"];
    let mut p1 = g.start(&[&sec[..], &mp, &["--proc-id=1", "--stats-period", "1"]].concat());
    p1.expect("Start automatic packet forwarding", T);
    p1.expect("  Rx-pps", T);
    let (st, _, err) = g.run(
        &[
            &["--lcores", "4@0,5@1", "--proc-type=secondary", "--"][..],
            &["--rxq=4", "--txq=4", "--num-procs=2", "--proc-id=1"],
        ]
        .concat(),
    );
    assert!(
        st.code() == Some(1) && err.contains("port 0 has 2 RX and 2 TX queues"),
        "{err}"
    );
    for p in [&mut p1, &mut p0] {
        p.stop_ok();
        let out = p.stdout().join("\n");
        assert!(out.contains("streams=2"), "{out}");
    }
    let (st, _, err) = g.run(&["-l", "0-1", "-m", "64", "--"]);
    assert!(
        st.code() == Some(1) && err.contains("no ports: add some with --vdev"),
        "{err}"
    );
    let (st, _, err) = g.run(&["-l", "0", "-m", "64", "--vdev", "net_null0", "--"]);
    assert!(
        st.code() == Some(1) && err.contains("give at least two lcores"),
        "{err}"
    );
}
