//! The multi-process tools against running primaries: proc-info (statistics, xstats, link,
//! mempools, rings, memzones, reset, JSON), mp_server/mp_client, and dumpcap (captures read
//! back by tshark).

use serde_json::Value;
use std::time::Duration;
use system_tests::frames::{check_each_once, dumpcap, tshark};
use system_tests::{
    client_stat, proc_info_json, symmetric_mp_args, workspace_bin, Group, NetNs, Proc, T,
};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");
/// Where a TX queue's packets are back in their pool and the queue has not yet forgotten
/// (or counted) them: see `net::mbuf::free_then_forget`.
const PUT_PINNED: &str = "mempool.pinned.put";
/// Where net_ring's TX burst has claimed slots of its ring and not yet written them.
const TX_CLAIMED: &str = "ring.mp_enqueue.claimed";

/// Runs port_helper as a secondary of `g` on lcore `lcore` (mapped to CPU 0).
fn helper(g: &Group, lcore: u32, args: &[&str]) -> Proc {
    g.secondary(HELPER, &format!("{lcore}@0"), args)
}

/// Starts collecting `n` frames (for at most `secs` seconds) from both TX queues of
/// net_ring1, where mp_server's two clients send; returns once the collector is ready.
fn collect_from_clients(g: &Group, n: &str, secs: &str) -> Proc {
    let mut col = helper(g, 5, &["collect", "net_ring1", n, secs, "-", "-", "2"]);
    col.expect("COLLECTING", T);
    col
}

/// The `POOL in_use=N` line of pool `name`: mp_server's (`MProc_pktmbuf_pool`), which its
/// TAP ports receive into, or an injector's, whose frames `net_ring` ports receive.
fn pool_in_use(g: &Group, name: &str) -> String {
    helper(g, 6, &["pool", name]).expect("POOL", T)
}

/// The pool an injector's frames came from, named in its `INJECTED` line.
fn injector_pool(injected: &str) -> String {
    injected
        .rsplit_once("pool=")
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| panic!("no pool in '{injected}'"))
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no '{name}' in {list}"))
}

#[test]
fn proc_info_reads_a_running_l2fwd_and_resets_its_statistics() {
    let g = Group::new("pinfo", &workspace_bin("l2fwd"));
    let mut l2 = g.start_l2fwd_on_rings("0");
    let mut col = helper(
        &g,
        2,
        &[
            "collect",
            "net_ring1",
            "3000",
            "30",
            "02:00:00:00:00:01",
            "02:00:00:00:01:01",
        ],
    );
    col.expect("COLLECTING", T);
    let mut inj = helper(&g, 3, &["inject", "net_ring0", "3000"]);
    let collected = col.expect("COLLECTED", T);
    assert!(
        collected.starts_with("COLLECTED ok=3000 bad=0"),
        "{collected}"
    );
    inj.expect("POOL", T);
    let bytes = system_tests::number_after(&collected, "bytes=");

    let all = proc_info_json(
        &g,
        &[
            "--stats",
            "--xstats",
            "--show-port",
            "--show-mempool",
            "--show-ring",
            "-m",
        ],
    );
    let ports = all["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 2, "{all}");
    let (p0, p1) = (&ports[0], &ports[1]);
    assert_eq!(p0["stats"]["ipackets"], 3000, "{p0}");
    assert_eq!(p0["stats"]["ibytes"], bytes, "{p0}");
    assert_eq!(p1["stats"]["opackets"], 3000, "{p1}");
    assert_eq!(p1["stats"]["obytes"], bytes, "{p1}");
    assert_eq!(p0["stats"]["opackets"], 0);
    assert_eq!(p0["xstats"]["rx_q0_packets"], 3000);
    assert_eq!(p1["xstats"]["tx_good_packets"], 3000);
    assert_eq!(p0["settings"]["driver"], "net_ring");
    assert_eq!(p0["settings"]["link"]["up"], true);
    assert_eq!(p1["settings"]["state"], "started");
    // l2fwd holds no mbuf once the collector freed what it took.
    assert_eq!(find(&all["mempools"], "mbuf_pool")["in_use"], 0, "{all}");
    assert_eq!(find(&all["rings"], "net_ring1_tx0")["count"], 0, "{all}");
    find(&all["memzones"], "ethdev_ports");

    // A reset is seen by everyone; new traffic counts from zero.
    let reset = proc_info_json(&g, &["--stats-reset", "-p", "0x1"]);
    assert_eq!(reset["ports"][0]["stats_reset"], true);
    let mut inj = helper(&g, 3, &["inject", "net_ring0", "5"]);
    inj.expect("INJECTED", T);
    let after = system_tests::eventually(
        || proc_info_json(&g, &["-p", "0x1"]),
        |after| after["ports"][0]["stats"]["ipackets"] == 5,
    );
    assert_eq!(after["ports"].as_array().map(Vec::len), Some(1));
    assert_eq!(after["ports"][0]["stats"]["ipackets"], 5, "{after}");

    // Text output, as DPDK's proc-info prints it.
    let (st, out, err) = system_tests::run(
        &workspace_bin("proc-info"),
        &["--file-prefix", g.prefix.as_str(), "--", "-p", "0x1"],
        T,
    );
    assert!(st.success(), "{err}");
    assert!(out.contains("NIC statistics for port 0"), "{out}");
    assert!(out.contains("RX-packets: 5 "), "{out}");

    l2.stop_ok();
}

#[test]
fn proc_info_refuses_bad_input_clearly() {
    let g = Group::new("pinfobad", &workspace_bin("proc-info"));
    let (st, _, err) = g.run(&["--"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("no primary process is running"), "{err}");
    let l2g = Group::new("pinfobad2", &workspace_bin("l2fwd"));
    let mut l2 = l2g.start_l2fwd_on_rings("0");
    let pi = workspace_bin("proc-info");
    for (args, want) in [
        (
            &["-p", "0x4"][..],
            "names port 2, but this process has ports [0, 1]",
        ),
        (&["-p", "zz"][..], "'zz' is not a hexadecimal port mask"),
        (&["--colour"][..], "unexpected argument '--colour'"),
    ] {
        let mut a = vec!["--file-prefix", l2g.prefix.as_str(), "--"];
        a.extend_from_slice(args);
        let (st, _, err) = system_tests::run(&pi, &a, T);
        assert_eq!(st.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // The primary is unharmed by the tool's failures.
    let all = proc_info_json(&l2g, &[]);
    assert_eq!(all["ports"].as_array().map(Vec::len), Some(2));
    l2.stop_ok();
}

#[test]
fn a_tool_refuses_a_group_whose_ports_another_build_laid_out() {
    // A primary of the same version but other sources (here: a port table of 64 bytes,
    // reserved under its name by an EAL-only primary) must not be read as ports.
    let g = Group::new("pinfolayout", env!("CARGO_BIN_EXE_eal_helper"));
    let mut prim = g.start(&["-l", "0", "-m", "16", "--", "mz-write", "keep", "1"]);
    prim.expect("ADDR", T);
    let pi = workspace_bin("proc-info");
    let prefix = ["--file-prefix", g.prefix.as_str(), "--"];
    let (st, _, err) = system_tests::run(&pi, &prefix, T);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("the primary of this group has no ports"),
        "{err}"
    );
    let (st, out, err) = g.run(&[
        "-l",
        "1",
        "--proc-type=secondary",
        "--",
        "mz-reserve",
        "ethdev_ports",
        "64",
    ]);
    assert!(st.success() && out.contains("RESERVED"), "{out} {err}");
    let (st, _, err) = system_tests::run(&pi, &prefix, T);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("the primary's port table is 64 bytes and this binary's")
            && err.contains("start every process of a group from the same build"),
        "{err}"
    );
    prim.finish(T);
}

#[test]
fn client_server_mp_sends_every_frame_once_and_a_dead_client_loses_no_mbuf() {
    let g = Group::new("csmp", &workspace_bin("mp_server"));
    let client = workspace_bin("mp_client");
    let mut server = g.start_on_rings(&["-p", "0x3", "-n", "2", "-T", "0"]);
    server.expect("mp_server ready", T);
    let mut c0 = g.mp_client(0);
    let c1 = g.mp_client(1);

    // Both clients running: every frame leaves port 1 exactly once, intact.
    let mut col = collect_from_clients(&g, "3000", "30");
    helper(&g, 6, &["inject", "net_ring0", "3000"]).expect("INJECTED", T);
    let line = col.expect("COLLECTED", T);
    assert!(
        line.starts_with("COLLECTED ok=3000 bad=0 dup=0 bad_mac=0 missing=0"),
        "{line}"
    );

    // A second client 0, and a client the server does not have, are refused.
    for (id, want) in [
        ("0", "client 0 is already running as process"),
        ("2", "give -n 0 to 1"),
    ] {
        let mut p = g.secondary(&client, "4@0", &["-n", id]);
        let st = p.finish(T);
        assert!(
            st.code() == Some(1) && p.stderr().contains(want),
            "{}",
            p.stderr()
        );
    }

    // Client 1 killed: the server notices, and its frames are dropped and counted.
    c1.signal(libc::SIGKILL);
    server.expect_stderr("client 1 (pid", T);
    let mut col = collect_from_clients(&g, "2000", "3");
    let pool =
        injector_pool(&helper(&g, 6, &["inject", "net_ring0", "2000"]).expect("INJECTED", T));
    let line = col.expect("COLLECTED", T);
    assert!(line.contains("bad=0 dup=0 bad_mac=0"), "{line}");
    let to_client0 = system_tests::number_after(&line, "ok=");
    assert!(to_client0 > 0 && to_client0 < 2000, "{line}");

    // Every mbuf is back in the injector's pool: none stuck in the dead client's ring.
    assert_eq!(pool_in_use(&g, &pool), "POOL in_use=0");

    // A new client 1 takes the slot over and gets its share again.
    let mut c1 = g.mp_client(1);
    let mut col = collect_from_clients(&g, "1000", "30");
    helper(&g, 6, &["inject", "net_ring0", "1000"]).expect("INJECTED", T);
    let line = col.expect("COLLECTED", T);
    assert!(
        line.starts_with("COLLECTED ok=1000 bad=0 dup=0 bad_mac=0 missing=0"),
        "{line}"
    );

    c0.stop_ok();
    c1.stop_ok();
    server.stop_ok();
    let out = server.stdout().join("\n");
    // Client 1's frames while it was dead: each dropped and counted (or taken back from its
    // ring, had the server put some there before it noticed), none lost.
    let lost_to_c1 = client_stat(&out, 1, "rx_drop") + client_stat(&out, 1, "drained");
    assert_eq!(to_client0 + lost_to_c1, 2000, "{out}");
    let sent = client_stat(&out, 0, "tx") + client_stat(&out, 1, "tx");
    assert_eq!(sent, 3000 + to_client0 + 1000, "{out}");
    assert!(
        client_stat(&out, 0, "tx") > 0 && client_stat(&out, 1, "tx") > 0,
        "{out}"
    );
}

#[test]
fn client_server_mp_over_tap_sends_every_frame_once_and_a_dead_client_loses_no_mbuf() {
    let ns = NetNs::new("cs");
    let g = Group::new("csmptap", &workspace_bin("mp_server"));
    let mut server = g.start_on_taps(&ns, ["cs0", "cs1"], &["-p", "0x3", "-n", "2", "-T", "0"]);
    server.expect("mp_server ready", T);
    // The clients run outside the namespace: they send through the TAP queues the server
    // handed them over IPC.
    let mut c0 = g.mp_client(0);
    let c1 = g.mp_client(1);
    // Each port's TAP RX queue keeps one empty mbuf for its next read.
    let in_use = || pool_in_use(&g, "MProc_pktmbuf_pool");
    let at_start = in_use();
    assert_eq!(at_start, "POOL in_use=2");
    let send_and_receive = |n: u32, secs: &str| {
        let n = n.to_string();
        let mut recv = ns.start(HELPER, &["tap-recv", "cs1", &n, secs, "-", "-"]);
        recv.expect("LISTENING", T);
        ns.start(HELPER, &["tap-send", "cs0", &n, "10000"])
            .expect("SENT", T);
        recv.expect("RECEIVED", T)
    };
    let got = send_and_receive(3000, "30");
    assert!(
        got.starts_with("RECEIVED ok=3000 dup=0 bad_mac=0 missing=0 other=0 "),
        "{got}"
    );

    c1.signal(libc::SIGKILL);
    server.expect_stderr("client 1 (pid", T);
    let got = send_and_receive(1000, "3");
    assert!(got.contains("dup=0 bad_mac=0"), "{got}");
    let to_client0 = system_tests::number_after(&got, "ok=");
    assert!(to_client0 > 0 && to_client0 < 1000, "{got}");
    assert_eq!(in_use(), at_start);

    c0.stop_ok();
    server.stop_ok();
    let out = server.stdout().join("\n");
    let lost_to_c1 = client_stat(&out, 1, "rx_drop") + client_stat(&out, 1, "drained");
    assert_eq!(to_client0 + lost_to_c1, 1000, "{out}");
}

#[test]
fn a_client_killed_after_its_tap_queue_freed_what_it_wrote_loses_no_mbuf() {
    // Client 1 dies (a fault point) in its TAP TX burst after the frames it wrote went back
    // to its lcore's cache and before the queue counted them. The server must
    // count them as the queue's (sent) rather than free them again with the rest of the
    // client's hand: the pool is back where it started, each frame out once or counted.
    let ns = NetNs::new("ck");
    let g = Group::new("csmptapkill", &workspace_bin("mp_server"));
    let mut server = g.start_on_taps(&ns, ["ck0", "ck1"], &["-p", "0x3", "-n", "2", "-T", "0"]);
    server.expect("mp_server ready", T);
    let mut c0 = g.mp_client(0);
    let mut c1 = g.mp_client_armed(1, PUT_PINNED);
    let in_use = || pool_in_use(&g, "MProc_pktmbuf_pool");
    let at_start = in_use();
    let mut recv = ns.start(HELPER, &["tap-recv", "ck1", "1000", "3", "-", "-"]);
    recv.expect("LISTENING", T);
    ns.start(HELPER, &["tap-send", "ck0", "1000", "10000"])
        .expect("SENT", T);
    let got = recv.expect("RECEIVED", T);
    c1.expect_fault(PUT_PINNED);
    server.expect_stderr(&format!("client 1 (pid {}) died", c1.pid()), T);
    server.expect_stderr("packets its dead poller had freed", T);
    assert!(got.contains("dup=0 bad_mac=0"), "{got}");
    assert_eq!(
        system_tests::eventually(in_use, |n| *n == at_start),
        at_start
    );
    c0.stop_ok();
    server.stop_ok();
    let out = server.stdout().join("\n");
    let c1_counted = client_stat(&out, 1, "rx_drop") + client_stat(&out, 1, "drained");
    assert_eq!(
        system_tests::number_after(&got, "ok=") + c1_counted,
        1000,
        "{got}\n{out}"
    );
}

#[test]
fn a_process_killed_inside_a_get_from_the_pool_ring_blocks_no_one_and_loses_nothing() {
    // Two secondaries take mbufs from the server's pool and give them back; one dies (a
    // fault point, at its first refill) as its cache's refill returns from the pool's ring (the objects taken, the cache's
    // count not yet grown, no mbuf in its hands), holding the ring's get side. The other
    // must go on (the next getter repairs the dead one's get) and the pool ends where it
    // started.
    let g = Group::new("deadget", &workspace_bin("mp_server"));
    let mut server = g.start_on_rings(&["-p", "0x3", "-n", "1", "-T", "0"]);
    server.expect("mp_server ready", T);
    let in_use = || pool_in_use(&g, "MProc_pktmbuf_pool");
    let at_start = in_use();
    let mut victim = g.secondary_armed(
        HELPER,
        "6@0",
        &["churn", "MProc_pktmbuf_pool", "30"],
        "mempool.get.taken",
    );
    victim.expect("CHURNING", T);
    victim.expect_fault("mempool.get.taken");
    let mut other = helper(&g, 7, &["churn", "MProc_pktmbuf_pool", "2"]);
    other.expect("CHURNED", T);
    let said = |p: &Proc| p.stderr().contains("finished a dead process's get");
    assert!(
        system_tests::eventually(|| said(&server) || said(&other), |s| *s),
        "{}\n{}",
        server.stderr(),
        other.stderr()
    );
    assert_eq!(
        system_tests::eventually(in_use, |n| *n == at_start),
        at_start
    );
    server.stop_ok();
}

#[test]
fn client_server_mp_clients_killed_under_traffic_lose_no_mbuf() {
    // A client killed while frames flow: each frame is sent once, dropped and counted, or
    // taken back from the dead client's ring or hand; no mbuf stays in use, none goes back
    // to the pool twice.
    const ROUNDS: u64 = 3;
    const FRAMES: u64 = 6000;
    let g = Group::new("csmpkill", &workspace_bin("mp_server"));
    let mut server = g.start_on_rings(&["-p", "0x3", "-n", "2", "-T", "0"]);
    server.expect("mp_server ready", T);
    let mut c0 = g.mp_client(0);
    let mut collected = 0;
    let mut pools = Vec::new();
    for _ in 0..ROUNDS {
        let c1 = g.mp_client(1);
        let mut col = collect_from_clients(&g, &FRAMES.to_string(), "5");
        // One second of frames; client 1 dies in the middle of it.
        let mut inj = helper(
            &g,
            6,
            &["inject", "net_ring0", &FRAMES.to_string(), "1", "6000"],
        );
        std::thread::sleep(Duration::from_millis(400));
        c1.signal(libc::SIGKILL);
        server.expect_stderr(&format!("client 1 (pid {})", c1.pid()), T);
        pools.push(injector_pool(&inj.expect("INJECTED", T)));
        let line = col.expect("COLLECTED", T);
        assert!(line.contains("bad=0 dup=0 bad_mac=0"), "{line}");
        collected += system_tests::number_after(&line, "ok=");
    }
    // The frames came from each round's injector pool: none is still in use.
    for pool in &pools {
        assert_eq!(pool_in_use(&g, pool), "POOL in_use=0", "{pool}");
    }
    c0.stop_ok();
    server.stop_ok();
    let out = server.stdout().join("\n");
    let counted: u64 = (0..2)
        .flat_map(|c| ["rx_drop", "drained"].map(|k| client_stat(&out, c, k)))
        .sum();
    assert_eq!(collected + counted, ROUNDS * FRAMES, "{out}");
    assert!(
        client_stat(&out, 1, "drained") + client_stat(&out, 1, "rx_drop") > 0,
        "{out}"
    );
}

#[test]
fn a_tx_queue_whose_poller_died_mid_enqueue_goes_on_with_the_next_poller() {
    // A poller killed between claiming slots of its net_ring TX ring and publishing them
    // would leave the ring's next producer waiting for good. A flooding poller dies (a
    // fault point) right after its second claim, the first having printed FLOODING; the
    // queue's next poller must send.
    let g = Group::new("deadclaim", &workspace_bin("mp_server"));
    let mut server = g.start_on_rings(&["-p", "0x3", "-n", "2", "-T", "0"]);
    server.expect("mp_server ready", T);
    let mut drain = helper(&g, 5, &["drain", "net_ring1", "2"]);
    drain.expect("DRAINING", T);
    let claimed = format!("{TX_CLAIMED}@2");
    let mut flood = g.secondary_armed(HELPER, "6@0", &["tx-flood", "net_ring1", "1"], &claimed);
    flood.expect("FLOODING", T);
    flood.expect_fault(&claimed);
    let mut next = helper(&g, 7, &["tx-flood", "net_ring1", "1"]);
    next.expect("FLOODING", T);
    server.expect_stderr("died inside a burst on TX queue 1", T);
    server.expect_stderr("net_ring1: tx ring 1: gave up", T);
    let all = proc_info_json(&g, &["--show-ring"]);
    assert_eq!(
        find(&all["rings"], "net_ring1_tx1")["enqueue_claims"],
        0,
        "{all}"
    );
    next.kill();
    drain.kill();
    server.stop_ok();
}

#[test]
fn a_client_killed_inside_its_tx_burst_loses_no_mbuf() {
    // Client 1 dies (a fault point) right after its first TX burst claimed slots of
    // net_ring1's TX ring, with the frames it took from its ring in hand. The server must give the
    // claim up and free the frames the queue never took: the injector's pool empties.
    let g = Group::new("deadhand", &workspace_bin("mp_server"));
    let mut server = g.start_on_rings(&["-p", "0x3", "-n", "2", "-T", "0"]);
    server.expect("mp_server ready", T);
    let mut c0 = g.mp_client(0);
    let mut c1 = g.mp_client_armed(1, TX_CLAIMED);
    let mut col = collect_from_clients(&g, "2000", "5");
    let pool =
        injector_pool(&helper(&g, 6, &["inject", "net_ring0", "2000"]).expect("INJECTED", T));
    c1.expect_fault(TX_CLAIMED);
    server.expect_stderr(&format!("client 1 (pid {}) died", c1.pid()), T);
    server.expect_stderr("net_ring1: tx ring 1: gave up", T);
    let line = col.expect("COLLECTED", T);
    assert!(line.contains("bad=0 dup=0 bad_mac=0"), "{line}");
    let to_client0 = system_tests::number_after(&line, "ok=");
    assert_eq!(pool_in_use(&g, &pool), "POOL in_use=0");
    c0.stop_ok();
    server.stop_ok();
    let out = server.stdout().join("\n");
    assert_eq!(client_stat(&out, 1, "tx"), 0, "{out}");
    let c1_counted = client_stat(&out, 1, "rx_drop") + client_stat(&out, 1, "drained");
    assert_eq!(to_client0 + c1_counted, 2000, "{out}");
}

#[test]
fn a_client_stopped_while_its_port_is_full_hands_its_frames_back() {
    // Nobody drains port 1: its TX ring fills, and client 0 keeps offering the frames in its
    // hand (a client never drops). Stopped then, it leaves them to the server, which frees
    // those the queue did not take; what the queue took goes out once a collector comes.
    let g = Group::new("handback", &workspace_bin("mp_server"));
    let mut server = g.start_on_rings(&["-p", "0x3", "-n", "1", "-T", "0"]);
    server.expect("mp_server ready", T);
    let mut c0 = g.mp_client(0);
    let pool =
        injector_pool(&helper(&g, 6, &["inject", "net_ring0", "3000"]).expect("INJECTED", T));
    let all = system_tests::eventually(
        || proc_info_json(&g, &["--show-ring"]),
        |all| find(&all["rings"], "net_ring1_tx0")["free"] == 0,
    );
    let tx_ring = find(&all["rings"], "net_ring1_tx0")["count"].as_u64();
    assert!(tx_ring.is_some_and(|n| n > 0), "{all}");
    // The client holds frames claimed in its ring (some of them, perhaps, already taken by
    // the TX ring: those stay claimed until the whole hand is sent).
    let hand = find(&all["rings"], "MProc_Client_0_RX")["dequeue_claims"].as_u64();
    assert!(hand.is_some_and(|n| n > 0), "{all}");
    c0.stop_ok();
    let said = c0.stdout().join("\n");
    assert!(
        said.contains("frames not sent, left to the server"),
        "{said}"
    );
    // The slot is free again once the server has settled them.
    let mut c0 = g.mp_client(0);
    let mut col = helper(&g, 5, &["collect", "net_ring1", "3000", "3", "-", "-", "1"]);
    let line = col.expect("COLLECTED", T);
    assert!(line.contains("bad=0 dup=0 bad_mac=0"), "{line}");
    assert_eq!(
        Some(system_tests::number_after(&line, "ok=")),
        tx_ring,
        "{line}"
    );
    assert_eq!(pool_in_use(&g, &pool), "POOL in_use=0");
    c0.stop_ok();
    server.stop_ok();
    let out = server.stdout().join("\n");
    assert_eq!(
        tx_ring.map(|n| n + client_stat(&out, 0, "drained")),
        Some(3000),
        "{out}"
    );
}

/// A path for a capture file, under cargo's scratch directory for integration tests.
fn tmp_file(name: &str) -> String {
    format!(
        "{}/{}-{name}",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    )
}

#[test]
fn dumpcap_captures_what_l2fwd_receives_and_sends_and_tshark_reads_it() {
    let g = Group::new("dumpcap", &workspace_bin("l2fwd"));
    let mut l2 = g.start_l2fwd_on_rings("0");

    // Both ports into one pcapng: port 0's RX (as injected) and port 1's TX (MACs rewritten).
    let ng = tmp_file("both.pcapng");
    let mut cap = dumpcap(
        &g,
        126,
        &["-i", "0", "-i", "net_ring1", "-w", &ng, "-c", "2000"],
    );
    let mut col = helper(
        &g,
        2,
        &[
            "collect",
            "net_ring1",
            "1000",
            "30",
            "02:00:00:00:00:01",
            "02:00:00:00:01:01",
        ],
    );
    col.expect("COLLECTING", T);
    helper(&g, 3, &["inject", "net_ring0", "1000"]).expect("INJECTED", T);
    let line = col.expect("COLLECTED", T);
    assert!(line.starts_with("COLLECTED ok=1000 bad=0"), "{line}");
    assert!(cap.finish(T).success(), "{}", cap.stderr());
    let err = cap.stderr();
    assert!(err.contains("Packets captured: 2000"), "{err}");
    assert!(err.contains("interface 'net_ring0': 1000/0"), "{err}");

    let frames = tshark(&ng);
    assert_eq!(frames.len(), 2000);
    check_each_once(
        &frames,
        1000,
        [
            (0, 1, "02:00:00:00:aa:aa", "02:00:00:00:bb:bb"),
            (1, 2, "02:00:00:00:01:01", "02:00:00:00:00:01"),
        ],
    );

    // Classic pcap, port 0 only, taken again after the first capture ended.
    let pcap = tmp_file("rx.pcap");
    let mut cap = dumpcap(
        &g,
        125,
        &["-i", "net_ring0", "-w", &pcap, "-c", "1000", "-P"],
    );
    let mut col = helper(&g, 2, &["collect", "net_ring1", "1000", "30", "-", "-"]);
    col.expect("COLLECTING", T);
    helper(&g, 3, &["inject", "net_ring0", "1000"]).expect("INJECTED", T);
    assert!(col
        .expect("COLLECTED", T)
        .starts_with("COLLECTED ok=1000 bad=0"));
    assert!(cap.finish(T).success(), "{}", cap.stderr());
    let frames = tshark(&pcap);
    assert_eq!(frames.len(), 1000);
    assert!(frames
        .iter()
        .enumerate()
        .all(|(i, f)| f.payload_ok && f.index == i as u32));

    // Nothing of either capture is left in the group, and l2fwd holds no mbuf.
    let all = proc_info_json(&g, &["--show-mempool", "--show-ring", "-m"]);
    let text = all.to_string();
    assert!(!text.to_lowercase().contains("capture_"), "{all}");
    assert_eq!(find(&all["mempools"], "mbuf_pool")["in_use"], 0, "{all}");
    l2.stop_ok();
}

/// Waits for `primary` to say it removed the capture of exited capturer `pid`, and checks
/// that no object of it is left in group `g`; returns proc-info's view of the group.
fn capture_gone(g: &Group, primary: &Proc, pid: i32) -> Value {
    primary.expect_stderr(&format!("removed the capture of exited process {pid}"), T);
    let all = proc_info_json(g, &["--show-mempool", "--show-ring", "-m"]);
    assert!(
        !all.to_string().to_lowercase().contains("capture_"),
        "{all}"
    );
    all
}

#[test]
fn a_killed_dumpcap_is_cleaned_up_and_forwarding_never_stops() {
    let g = Group::new("dumpkill", &workspace_bin("l2fwd"));
    let mut l2 = g.start_l2fwd_on_rings("0");
    let file = tmp_file("killed.pcapng");
    let mut cap = dumpcap(&g, 126, &["-i", "0", "-w", &file]);

    // A second capture of the same port is refused, naming the first.
    let (st, _, err) = system_tests::run(
        &workspace_bin("dumpcap"),
        &[
            "--file-prefix",
            g.prefix.as_str(),
            "--lcores",
            "125@0",
            "--",
            "-i",
            "0",
            "-w",
            &tmp_file("x"),
        ],
        T,
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("already captured by process {}", cap.pid())),
        "{err}"
    );

    // Killed while frames flow: every frame is still forwarded.
    let mut col = helper(&g, 2, &["collect", "net_ring1", "3000", "30", "-", "-"]);
    col.expect("COLLECTING", T);
    let mut inj = helper(&g, 3, &["inject", "net_ring0", "3000", "1", "10000"]);
    std::thread::sleep(Duration::from_millis(100));
    cap.kill();
    inj.expect("INJECTED", T);
    let line = col.expect("COLLECTED", T);
    assert!(line.starts_with("COLLECTED ok=3000 bad=0"), "{line}");
    let all = capture_gone(&g, &l2, cap.pid());
    assert_eq!(find(&all["mempools"], "mbuf_pool")["in_use"], 0, "{all}");

    // The port can be captured again.
    let again = tmp_file("again.pcapng");
    let mut cap = dumpcap(&g, 126, &["-i", "0", "-w", &again, "-c", "5"]);
    helper(&g, 3, &["inject", "net_ring0", "5"]).expect("INJECTED", T);
    assert!(cap.finish(T).success(), "{}", cap.stderr());
    assert_eq!(tshark(&again).len(), 5);
    l2.stop_ok();
}

#[test]
fn a_poller_killed_inside_a_capture_holds_up_neither_its_freeing_nor_the_queue() {
    // symmetric_mp's secondary (queue 1 of each port) dies (a fault point) inside the
    // capture of its RX queue, copies of a burst in hand. It will never leave the queue's
    // capture slot: the primary, freeing the capture when dumpcap dies, must see that it is
    // dead instead of waiting for it; then the port is captured again, queue 1 included,
    // with a new secondary polling it.
    let g = Group::new("deadcopy", &workspace_bin("symmetric_mp"));
    let program = workspace_bin("symmetric_mp");
    let mut p0 = g.start_on_rings_at("0", &symmetric_mp_args("0"));
    p0.expect("Finished Process Init", T);
    let mut cap = dumpcap(&g, 126, &["-i", "0", "-w", &tmp_file("deadcopy.pcapng")]);
    let point = "capture.copied";
    let mut p1 = g.secondary_armed(&program, "1@1", &symmetric_mp_args("1"), point);
    p1.expect("Finished Process Init", T);
    helper(&g, 6, &["inject", "net_ring0", "100", "2"]).expect("INJECTED", T);
    p1.expect_fault(point);
    p0.expect_stderr(&format!("process {} died inside a burst", p1.pid()), T);

    cap.kill();
    capture_gone(&g, &p0, cap.pid());

    let mut p1 = g.secondary(&program, "1@1", &symmetric_mp_args("1"));
    p1.expect("Finished Process Init", T);
    let again = tmp_file("deadcopy-again.pcapng");
    let mut cap = dumpcap(&g, 126, &["-i", "0", "-w", &again, "-c", "100"]);
    helper(&g, 6, &["inject", "net_ring0", "100", "2"]).expect("INJECTED", T);
    assert!(cap.finish(T).success(), "{}", cap.stderr());
    assert_eq!(tshark(&again).len(), 100);
    p1.stop_ok();
    p0.stop_ok();
}

#[test]
fn dumpcap_refuses_bad_input_clearly() {
    let g = Group::new("dumpbad", &workspace_bin("l2fwd"));
    let mut l2 = g.start_l2fwd_on_rings("0");
    let ok = tmp_file("bad.pcapng");
    for (args, want) in [
        (
            &["-i", "7", "-w", ok.as_str()][..],
            "no port '7' in this group; its ports are: 0 (net_ring0), 1 (net_ring1)",
        ),
        (
            &["-w", ok.as_str()][..],
            "give the port to capture with -i PORT",
        ),
        (&["-i", "0"][..], "give the file to write with -w FILE"),
        (
            &["-i", "0", "-w", "/nonexistent/x.pcap"][..],
            "cannot create '/nonexistent/x.pcap'",
        ),
        (
            &["-i", "0", "-w", ok.as_str(), "-a", "packets:3"][..],
            "only duration:SECONDS",
        ),
    ] {
        let mut a = vec!["--file-prefix", g.prefix.as_str()];
        a.extend_from_slice(args);
        let (st, _, err) = system_tests::run(&workspace_bin("dumpcap"), &a, T);
        assert_eq!(st.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // -D lists the ports; -a stops a capture that sees nothing.
    let (st, out, _) = system_tests::run(
        &workspace_bin("dumpcap"),
        &["--file-prefix", g.prefix.as_str(), "-D"],
        T,
    );
    assert!(st.success());
    assert!(out.contains("0. net_ring0 (net_ring, started)"), "{out}");
    let (st, _, err) = system_tests::run(
        &workspace_bin("dumpcap"),
        &[
            "--file-prefix",
            g.prefix.as_str(),
            "-i",
            "1",
            "-w",
            &ok,
            "-a",
            "duration:0.3",
        ],
        T,
    );
    assert!(st.success(), "{err}");
    assert!(err.contains("Packets captured: 0"), "{err}");
    assert!(tshark(&ok).is_empty());
    l2.stop_ok();
}
