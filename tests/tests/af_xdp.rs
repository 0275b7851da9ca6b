//! `net_af_xdp` on real kernel interfaces: veth pairs in a network namespace of the test's
//! own, frames sent and checked on the far ends with AF_PACKET sockets (port_helper's
//! `tap-send` and `tap-recv`), the apps forwarding between the near ends.

use system_tests::{proc_info_json, workspace_bin, Group, MbufCensus, NetNs, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");

/// Two veth pairs: `xa0`-`xa1` and `xb0`-`xb1` with `queues` queues, the near ends with
/// the MACs the receivers check (l2fwd's port 0 and 1).
fn two_pairs(tag: &str, queues: u32) -> NetNs {
    let ns = NetNs::new(tag);
    ns.veth("xa0", "xa1", queues, "02:00:00:00:01:00");
    ns.veth("xb0", "xb1", queues, "02:00:00:00:01:01");
    ns
}

/// The EAL options of a primary with ports on `xa0` and `xb0`, each with `vdev_args`.
fn ports(lcores: &str, vdev_args: &str) -> Vec<String> {
    let mut a: Vec<String> = ["-l", lcores, "-m", "128"].map(String::from).into();
    for (i, iface) in ["xa0", "xb0"].iter().enumerate() {
        a.push("--vdev".into());
        a.push(format!("net_af_xdp{i},iface={iface}{vdev_args}"));
    }
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A receiver of `n` frames on `iface`, checking the MACs (`-`: not checked); waits until
/// it listens.
fn receiver(ns: &NetNs, iface: &str, n: u32, quiet: &str, dst: &str, src: &str) -> Proc {
    let n = n.to_string();
    let mut r = ns.start(HELPER, &["tap-recv", iface, &n, quiet, dst, src]);
    r.expect("LISTENING", T);
    r
}

fn send(ns: &NetNs, iface: &str, n: u32, pps: u32) -> Proc {
    ns.start(
        HELPER,
        &["tap-send", iface, &n.to_string(), &pps.to_string()],
    )
}

fn received_all(r: &mut Proc, n: u32) {
    let got = r.expect("RECEIVED", T);
    assert!(
        got.starts_with(&format!(
            "RECEIVED ok={n} dup=0 bad_mac=0 missing=0 other=0 "
        )),
        "{got}"
    );
}

/// Every mbuf of `pool` in use is one a queue lent the kernel: none lost, none leaked.
fn all_lent(g: &Group, pool: &str) -> MbufCensus {
    let c = MbufCensus::take(g, pool);
    assert_eq!(c.in_use, c.rx_queues + c.tx_queues, "{c:?}");
    c
}

/// Whether `iface` has an XDP program attached.
fn has_program(ns: &NetNs, iface: &str) -> bool {
    let (_, out, _) = ns.run("ip", &["-d", "link", "show", iface]);
    out.contains("prog/xdp")
}

#[test]
fn l2fwd_forwards_mixed_frames_both_ways_between_two_af_xdp_ports() {
    let ns = two_pairs("xl2", 1);
    let g = Group::new("xdpl2", &workspace_bin("l2fwd"));
    let mut args = ports("0-1", "");
    args.extend(["--", "-p", "0x3", "-T", "0"].map(String::from));
    let mut l2 = g.start_in(&ns, &strs(&args));
    l2.expect("Port 1 Link up", T);
    assert!(has_program(&ns, "xa0") && has_program(&ns, "xb0"));

    // l2fwd sends what port 0 receives out of port 1 and back: the frames leave with the
    // destination 02:00:00:00:00:<port> and the port's own MAC as source.
    let mut to_b = receiver(
        &ns,
        "xb1",
        10_000,
        "30",
        "02:00:00:00:00:01",
        "02:00:00:00:01:01",
    );
    let mut to_a = receiver(
        &ns,
        "xa1",
        10_000,
        "30",
        "02:00:00:00:00:00",
        "02:00:00:00:01:00",
    );
    let mut sa = send(&ns, "xa1", 10_000, 20_000);
    let mut sb = send(&ns, "xb1", 10_000, 20_000);
    sa.expect("SENT 10000", T);
    sb.expect("SENT 10000", T);
    received_all(&mut to_b, 10_000);
    received_all(&mut to_a, 10_000);

    // What is in use is what the queues lent the kernel: the RX rings' buffers, and sent
    // frames whose completions the TX queues have not yet taken back.
    let c = all_lent(&g, "mbuf_pool");
    assert!(c.rx_queues > 0, "{c:?}");
    let xstats = proc_info_json(&g, &["--xstats"]);
    assert!(xstats.to_string().contains("xsk_q0_rx_dropped"), "{xstats}");

    l2.stop_ok();
    let out = l2.stdout().join(" ");
    let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for totals in [
        "Total packets sent: 20000",
        "Total packets received: 20000",
        "Total packets dropped: 0",
    ] {
        assert!(words.contains(totals), "{totals} in {out}");
    }
    // The program went with the port.
    assert!(!has_program(&ns, "xa0") && !has_program(&ns, "xb0"));
}

/// Sends every frame arriving at `iface` straight back out of it (tc mirred on its ingress).
fn loop_back(ns: &NetNs, iface: &str) {
    for args in [
        &["qdisc", "add", "dev", iface, "clsact"][..],
        // cBPF "return -1": every frame matches.
        &[
            "filter",
            "add",
            "dev",
            iface,
            "ingress",
            "bpf",
            "bytecode",
            "1,6 0 0 4294967295,",
            "action",
            "mirred",
            "egress",
            "redirect",
            "dev",
            iface,
        ],
    ] {
        let (status, out, err) = ns.run("tc", args);
        assert!(status.success(), "tc {args:?}: {out}{err}");
    }
}

#[test]
fn chained_frames_go_out_as_copies_and_every_mbuf_comes_back() {
    // port_helper's echo sends every third frame as a chain (a 40-byte first segment): the
    // TX queue copies those into one buffer of its UMEM and sends the rest as they are.
    // xa1 sends each frame back, so the echo checks all of them.
    let ns = NetNs::new("xcp");
    ns.veth("xa0", "xa1", 1, "02:00:00:00:01:00");
    loop_back(&ns, "xa1");
    let g = Group::new("xdpcp", HELPER);
    let mut echo = g.start_in(
        &ns,
        &[
            "-l",
            "0",
            "-m",
            "128",
            "--vdev",
            "net_af_xdp0,iface=xa0",
            "--",
            "echo",
            "0",
            "3000",
            "3000",
        ],
    );
    let got = echo.expect("ECHO", T);
    assert!(
        got.starts_with("ECHO sent=3000 ok=3000 bad=0 dup=0 missing=0 "),
        "{got}"
    );
    // The chains' segments and every copy are back in the pool once the port stopped.
    echo.expect("POOL after_stop=0", T);
    let status = echo.finish(T);
    assert!(status.success(), "{status}; stderr: {}", echo.stderr());
}

#[test]
fn a_stopped_af_xdp_port_gives_back_every_mbuf_and_a_killed_primary_leaves_no_program() {
    let ns = two_pairs("xst", 1);
    let g = Group::new("xdpst", &workspace_bin("testpmd"));
    let mut args = ports("0-1", "");
    args.extend(["--", "-i", "--forward-mode=io"].map(String::from));
    let mut pmd = g.start_in(&ns, &strs(&args));
    pmd.expect_stderr("queue(s) of xb0", T);
    for round in 0..2 {
        let mut r = receiver(&ns, "xb1", 1000, "10", "-", "-");
        send(&ns, "xa1", 1000, 20_000).expect("SENT 1000", T);
        let got = r.expect("RECEIVED", T);
        // Started again right after its stop, the port forwards as before.
        assert_eq!(
            system_tests::count(&got, "ok"),
            1000,
            "round {round}: {got}\n{}",
            pmd.stdout().join("\n")
        );
        // Stopped, the ports hold nothing: the kernel's buffers are all back in the pool.
        pmd.send("port stop all");
        pmd.expect("Done", T);
        let c = all_lent(&g, "mb_pool_0");
        assert_eq!((c.in_use, round), (0, round), "{c:?}");
        pmd.send("port start all");
        pmd.expect("Done", T);
    }
    // SIGKILL leaves nothing on the interfaces: their programs went with the links the
    // primary held.
    pmd.kill();
    let gone = system_tests::eventually(
        || has_program(&ns, "xa0") || has_program(&ns, "xb0"),
        |attached| !attached,
    );
    assert!(!gone, "a program stayed after its primary was killed");
}

/// symmetric_mp's primary on two veth pairs of two queues, polling queue 0 of each port.
fn mp_primary(tag: &str) -> (NetNs, Group, Proc) {
    let ns = two_pairs(tag, 2);
    let g = Group::new(tag, &workspace_bin("symmetric_mp"));
    let mut args = ports("0", ",queue_count=2");
    args.push("--".into());
    args.extend(system_tests::symmetric_mp_args("0").map(String::from));
    let mut p0 = g.start_in(&ns, &strs(&args));
    p0.expect("Finished Process Init", T);
    (ns, g, p0)
}

/// symmetric_mp's secondary, polling queue 1 of each port (armed for `point`, if given).
fn mp_secondary(ns: &NetNs, g: &Group, point: Option<&str>) -> Proc {
    let mut p = g.secondary_in(
        ns,
        &workspace_bin("symmetric_mp"),
        "1@1",
        &system_tests::symmetric_mp_args("1"),
        point,
    );
    if point.is_none() {
        p.expect("Finished Process Init", T);
    }
    p
}

#[test]
fn symmetric_mp_spreads_two_queues_over_two_processes_and_a_killed_secondary_loses_only_its_burst()
{
    let (ns, g, mut p0) = mp_primary("xmp");
    let mut p1 = mp_secondary(&ns, &g, None);

    // The veth peer spreads flows over both queues (it hashes each frame's flow to pick
    // its TX queue, and veth hands it to the same RX queue): each process forwards some.
    let mut r = receiver(&ns, "xb1", 4000, "10", "-", "-");
    send(&ns, "xa1", 4000, 20_000).expect("SENT 4000", T);
    received_all(&mut r, 4000);
    let x = proc_info_json(&g, &["--xstats"]);
    let spread: Vec<u64> = (0..2)
        .map(|q| {
            x["ports"][0]["xstats"][format!("rx_q{q}_packets")]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert!(
        spread.iter().all(|n| *n > 0),
        "both queues received: {spread:?}"
    );

    // Killed under traffic, then started again: what queue 1 received meanwhile waits in
    // its ring until the kernel's buffers run out, then the kernel drops (and counts) it.
    let n = 20_000;
    let mut r = receiver(&ns, "xb1", n, "5", "-", "-");
    let mut s = send(&ns, "xa1", n, 10_000);
    std::thread::sleep(std::time::Duration::from_millis(500));
    p1.kill();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _p1 = mp_secondary(&ns, &g, None);
    s.expect("SENT", T);
    let got = r.expect("RECEIVED", T);
    let ok = system_tests::count(&got, "ok");
    assert_eq!(system_tests::count(&got, "dup"), 0, "{got}");
    let x = proc_info_json(&g, &["--stats", "--xstats"]);
    let dropped: u64 = (0..2)
        .flat_map(|q| ["rx_dropped", "rx_ring_full"].map(|k| format!("xsk_q{q}_{k}")))
        .map(|k| x["ports"][0]["xstats"][k].as_u64().unwrap_or(0))
        .sum();
    println!("a secondary killed and started again: {got}; the kernel dropped {dropped}");
    // The port's imissed is what the kernel dropped, as DPDK's net_af_xdp reports it.
    assert_eq!(x["ports"][0]["stats"]["imissed"], dropped, "{x}");
    // The burst the secondary held when it died (at most symmetric_mp's 32) is the only
    // loss the kernel does not count.
    let lost = n as u64 - ok;
    assert!(
        lost >= dropped && lost <= dropped + 32,
        "{got}; kernel dropped {dropped}: {x}"
    );
    // Nothing leaked: the dead process's hands went back to the pool.
    all_lent(&g, "MProc_pktmbuf_pool");
    p0.stop_ok();
}

#[test]
fn a_secondary_killed_at_each_step_of_its_bursts_leaves_queues_that_lose_no_mbuf() {
    system_tests::require_fault_points("the test kills a poller at named points");
    let (ns, g, mut p0) = mp_primary("xkp");
    // Each point leaves a ring the kernel shares half-way through a step: frames taken and
    // the consumer not moved, buffers posted and not marked lent, frames committed for
    // sending and not marked, completions put back pinned and not forgotten.
    for point in [
        "af_xdp.rx.taken",
        "af_xdp.fill.committed",
        "af_xdp.tx.committed",
        "mempool.pinned.put",
    ] {
        let mut p1 = mp_secondary(&ns, &g, Some(point));
        let mut r = receiver(&ns, "xb1", 2000, "3", "-", "-");
        send(&ns, "xa1", 2000, 20_000).expect("SENT 2000", T);
        p1.expect_fault(point);
        r.expect("RECEIVED", T);
        // The primary repairs the dead poller's queues; the next poller takes them and
        // everything goes through.
        let mut p1 = mp_secondary(&ns, &g, None);
        let mut r = receiver(&ns, "xb1", 2000, "10", "-", "-");
        send(&ns, "xa1", 2000, 20_000).expect("SENT 2000", T);
        received_all(&mut r, 2000);
        let c = all_lent(&g, "MProc_pktmbuf_pool");
        println!("{point}: {c:?}");
        p1.kill();
    }
    p0.stop_ok();
}

#[test]
fn bad_af_xdp_set_ups_are_refused_with_what_to_do() {
    let ns = two_pairs("xbad", 1);
    let l2fwd = workspace_bin("l2fwd");
    // l2fwd on `vdev0` and xb0, run inside the namespace through the command `wrap`.
    let run_l2fwd = |g: &Group, vdev0: &str, wrap: &[&str]| -> String {
        let mut cmd: Vec<&str> = wrap.to_vec();
        cmd.extend([
            l2fwd.as_str(),
            "--file-prefix",
            g.prefix.as_str(),
            "-l",
            "0-1",
            "-m",
            "64",
            "--vdev",
            vdev0,
            "--vdev",
            "net_af_xdp1,iface=xb0",
            "--",
            "-p",
            "0x3",
        ]);
        let (st, _, err) = ns.run(cmd[0], &cmd[1..]);
        assert_eq!(st.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let g = Group::new("xdpbad", &workspace_bin("l2fwd"));
    let cases: &[(&str, &str)] = &[
        (
            "net_af_xdp0,iface=nosuch0",
            "no interface nosuch0 in this network namespace",
        ),
        ("net_af_xdp0", "iface= is missing"),
        (
            "net_af_xdp0,iface=xa0,queue_count=2",
            "asks for queues 0..1 of xa0, which has 1",
        ),
        (
            "net_af_xdp0,iface=xa0,zero_copy=yes",
            "zero_copy=yes: give auto, 0 or 1",
        ),
        (
            "net_af_xdp0,iface=xa0,zero_copy=1",
            "xa0's driver has no zero-copy AF_XDP: use zero_copy=auto",
        ),
        (
            "net_af_xdp0,iface=xa0,colour=red",
            "unknown argument 'colour'",
        ),
        (
            "net_af_xdp0,iface=xb0",
            "xb0 is already served by port 'net_af_xdp0' of this process",
        ),
    ];
    for (vdev, want) in cases {
        let err = run_l2fwd(&g, vdev, &[]);
        assert!(err.contains(want), "{vdev}: want '{want}' in: {err}");
        assert!(!has_program(&ns, "xa0"), "{vdev} left a program");
    }

    // An interface without native XDP: an ifb device has none (generic XDP serves it
    // unless mode=drv is asked for).
    let (st, _, err) = ns.run("ip", &["link", "add", "xi0", "type", "ifb"]);
    assert!(st.success(), "{err}");
    let err = run_l2fwd(&g, "net_af_xdp0,iface=xi0,mode=drv", &[]);
    assert!(err.contains("xi0 has no native XDP support"), "{err}");

    // Without the capabilities, the message says which.
    let err = run_l2fwd(
        &g,
        "net_af_xdp0,iface=xa0",
        &[
            "setpriv",
            "--bounding-set=-bpf,-net_admin,-sys_admin,-net_raw",
            "--inh-caps=-all",
        ],
    );
    assert!(
        err.contains("needs CAP_BPF and CAP_NET_ADMIN") && err.contains("run as root"),
        "{err}"
    );

    // An interface another group serves is refused, naming that group's process; the
    // other group forwards on.
    let other = Group::new("xdpown", &workspace_bin("l2fwd"));
    let mut args = ports("0-1", "");
    args.extend(["--", "-p", "0x3", "-T", "0"].map(String::from));
    let mut l2 = other.start_in(&ns, &strs(&args));
    l2.expect("Port 1 Link up", T);
    let err = run_l2fwd(&g, "net_af_xdp0,iface=xa0", &[]);
    let want = format!(
        "xa0 already has an XDP program, held by process {} (l2fwd, --file-prefix={})",
        l2.pid(),
        other.prefix
    );
    assert!(err.contains(&want), "{err}");
    let mut r = receiver(
        &ns,
        "xb1",
        500,
        "10",
        "02:00:00:00:00:01",
        "02:00:00:00:01:01",
    );
    send(&ns, "xa1", 500, 10_000).expect("SENT 500", T);
    received_all(&mut r, 500);
    l2.stop_ok();

    // DPDK's testpmd on the interface (its net_af_xdp attaches its program through
    // netlink, with no link): named all the same, by the program it holds.
    let mut dpdk = ns.start(
        "stdbuf",
        &[
            "-oL",
            "dpdk-testpmd",
            "-l",
            "0-1",
            "--no-pci",
            "--in-memory",
            "-m",
            "128",
            "--vdev",
            "net_af_xdp0,iface=xa0",
            "--",
            "-i",
            "--total-num-mbufs=4096",
        ],
    );
    dpdk.expect("Checking link statuses", T);
    dpdk.expect("Done", T);
    let err = run_l2fwd(&g, "net_af_xdp0,iface=xa0", &[]);
    let want = format!(
        "xa0 already has an XDP program, held by process {} (dpdk-testpmd",
        dpdk.pid()
    );
    assert!(err.contains(&want), "{err}");
    dpdk.send("quit");
    dpdk.finish(T);
}

#[test]
fn an_interface_going_down_under_traffic_is_reported_and_forwarding_resumes_when_it_is_up() {
    let ns = two_pairs("xdn", 1);
    let g = Group::new("xdpdn", &workspace_bin("l2fwd"));
    let mut args = ports("0-1", "");
    args.extend(["--", "-p", "0x3", "-T", "0"].map(String::from));
    let mut l2 = g.start_in(&ns, &strs(&args));
    l2.expect("Port 1 Link up", T);
    // Traffic flows, then the far side's interface goes down while frames keep coming.
    let mut r = receiver(&ns, "xb1", 1000, "10", "-", "-");
    send(&ns, "xa1", 1000, 10_000).expect("SENT 1000", T);
    received_all(&mut r, 1000);
    let (st, _, err) = ns.run("ip", &["link", "set", "xb0", "down"]);
    assert!(st.success(), "{err}");
    send(&ns, "xa1", 3000, 10_000).expect("SENT 3000", T);
    l2.expect_stderr("xb0 is down", T);
    let (st, _, err) = ns.run("ip", &["link", "set", "xb0", "up"]);
    assert!(st.success(), "{err}");
    // Up again: the frames that waited in the TX ring go out with the next burst (these,
    // not checked), then the port forwards as before, and nothing was lost to the pool.
    send(&ns, "xa1", 100, 10_000).expect("SENT 100", T);
    l2.expect_stderr("sending again", T);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut r = receiver(
        &ns,
        "xb1",
        1000,
        "10",
        "02:00:00:00:00:01",
        "02:00:00:00:01:01",
    );
    send(&ns, "xa1", 1000, 10_000).expect("SENT 1000", T);
    received_all(&mut r, 1000);
    all_lent(&g, "mbuf_pool");
    l2.stop_ok();
}
