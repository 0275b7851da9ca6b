//! The ixgbe PMD on the project's 82599 model (`ixgbe_model`): l2fwd across two model ports
//! with the rings wrapping many times, dumpcap on both of its ports, client_server_mp, an
//! exhausted RX ring counted in MPC and recovered (and the count zeroed by proc-info
//! --xstats-reset), a link change seen by a callback in a secondary, RSS spreading flows
//! over the queues of two processes as the redirection table says, ports stopped and
//! started while a secondary forwards, l2fwd holding against a model that lies in its RX
//! write-backs, and testpmd against one that stops completing TX (`--evil`). Frames reach
//! the model over UDP on 127.0.0.1, as they reach QEMU's dgram NICs in the guest tests, or
//! from its own generator.

use system_tests::devices::Model;
use system_tests::frames::{check_each_once, dumpcap, tshark};
use system_tests::{
    check_rss_shares, client_stat, count, eventually, number_after, proc_info_json, udp_fwd,
    udp_fwd_lines, udp_fwd_within, workspace_bin, Group, MbufCensus, Proc, T,
};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");
/// mp_server's mbuf pool.
const POOL: &str = "MProc_pktmbuf_pool";

fn start(g: &Group, program: &str, eal: &[&str], m: &Model, app: &[&str]) -> Proc {
    let vdevs = m.vdevs();
    let mut args = vec!["--file-prefix", g.prefix.as_str()];
    args.extend_from_slice(eal);
    args.extend(vdevs.iter().map(String::as_str));
    args.push("--");
    args.extend_from_slice(app);
    Proc::start(&workspace_bin(program), &args)
}

/// symmetric_mp as the primary on the model's two ports with two queues each, polling
/// queue 0 of both, once it has set them up.
fn start_symmetric_primary(g: &Group, m: &Model) -> Proc {
    let mut primary = start(
        g,
        "symmetric_mp",
        &["-l", "0", "-m", "128", "--proc-type=primary"],
        m,
        &["-p", "0x3", "--num-procs", "2", "--proc-id", "0"],
    );
    primary.expect("Finished Process Init", T);
    primary
}

/// testpmd's options as the secondary beside [`start_symmetric_primary`]: io forwarding on
/// queue 1 of both ports.
const TESTPMD_QUEUE_1: [&str; 5] = [
    "--forward-mode=io",
    "--rxq=2",
    "--txq=2",
    "--num-procs=2",
    "--proc-id=1",
];

/// l2fwd on the model's two ports, once both links are up.
fn start_l2fwd(g: &Group, m: &Model) -> Proc {
    let eal = ["-l", "0-1", "-m", "128"];
    let mut l2 = start(g, "l2fwd", &eal, m, &["-p", "0x3", "-T", "0"]);
    l2.expect("Port 1 Link up", T);
    l2
}

#[test]
fn l2fwd_between_two_82599_model_ports_wraps_the_rings() {
    let g = Group::new("ixl2fwd", &workspace_bin("l2fwd"));
    let m = Model::start(&g, 2, 23000);
    let mut l2 = start_l2fwd(&g, &m);
    // 20,000 mixed frames each way through rings of 1,024 descriptors: each ring wraps
    // about 20 times. l2fwd rewrites the destination to 02:00:00:00:00:<TX port> and the
    // source to the TX port's MAC.
    let one = udp_fwd(
        23000,
        23003,
        20_000,
        10_000,
        "02:00:00:00:00:01",
        "52:54:00:82:59:01",
    );
    let other = udp_fwd(
        23002,
        23001,
        20_000,
        10_000,
        "02:00:00:00:00:00",
        "52:54:00:82:59:00",
    );
    println!("port 0 -> 1: {one}\nport 1 -> 0: {other}");
    for line in [&one, &other] {
        assert_eq!(count(line, "ok"), 20_000, "{line}");
        assert_eq!(count(line, "bad_mac") + count(line, "dup"), 0, "{line}");
    }
    l2.signal(libc::SIGINT);
    let dropped = l2.expect("Total packets dropped:", T);
    assert_eq!(number_after(&dropped, ":"), 0, "{dropped}");
    assert!(l2.finish(T).success());
}

#[test]
fn dumpcap_captures_what_l2fwd_takes_and_sends_on_82599_model_ports() {
    let g = Group::new("ixcap", &workspace_bin("l2fwd"));
    let m = Model::start(&g, 2, 23040);
    let mut l2 = start_l2fwd(&g, &m);
    let file = format!(
        "{}/{}-ixgbe.pcapng",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    let mut cap = dumpcap(&g, 126, &["-i", "0", "-i", "1", "-w", &file, "-c", "2000"]);
    let (dst, src) = ("02:00:00:00:00:01", "52:54:00:82:59:01");
    let line = udp_fwd(23040, 23043, 1000, 10_000, dst, src);
    assert_eq!(count(&line, "ok"), 1000, "{line}");
    assert!(cap.finish(T).success(), "{}", cap.stderr());
    // Port 0's RX as the model delivered it, port 1's TX as l2fwd rewrote it.
    check_each_once(
        &tshark(&file),
        1000,
        [
            (0, 1, "02:00:00:00:aa:aa", "02:00:00:00:bb:bb"),
            (1, 2, src, dst),
        ],
    );
    let _ = std::fs::remove_file(&file);
    l2.stop_ok();
}

#[test]
fn l2fwd_holds_against_a_model_that_lies_in_rx_write_backs() {
    let g = Group::new("ixevil", &workspace_bin("l2fwd"));
    // Every 7th frame's write-back is longer than its buffer; DD appears on the tail.
    let m = Model::lying(&g, 2, 23090, &["--evil", "long-rx-len,unposted-dd"]);
    let mut l2 = start_l2fwd(&g, &m);
    let held_by_queues = |c: &MbufCensus| c.in_use == c.rx_queues + c.tx_queues;
    assert!(held_by_queues(&MbufCensus::take(&g, "mbuf_pool")));
    let line = udp_fwd(
        23090,
        23093,
        7_000,
        10_000,
        "02:00:00:00:00:01",
        "52:54:00:82:59:01",
    );
    println!("port 0 -> 1: {line}");
    let x = proc_info_json(&g, &["--xstats"]);
    let stat = |name: &str| -> u64 {
        x["ports"][0]["xstats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no xstat {name} in {x}"))
    };
    let (bad_len, unposted) = (stat("rx_bad_desc_len"), stat("rx_unposted_dd"));
    println!("rx_bad_desc_len {bad_len}, rx_unposted_dd {unposted}");
    // The lies are counted; the frames whose length was honest arrive, once. A DD on the
    // tail that races with the driver giving it reads as a zero length: one more frame
    // dropped and counted as a bad length.
    let ok = count(&line, "ok");
    assert!(bad_len >= 1_000, "{line}");
    assert!(unposted > 0, "{x}");
    assert_eq!(ok + bad_len, 7_000, "{line}");
    assert_eq!(count(&line, "bad_mac") + count(&line, "dup"), 0, "{line}");
    // No mbuf leaked or freed twice: every one in use is held by a queue.
    let after = eventually(|| MbufCensus::take(&g, "mbuf_pool"), held_by_queues);
    assert!(held_by_queues(&after), "{after:?}");
    l2.signal(libc::SIGINT);
    assert!(l2.finish(T).success());
}

#[test]
fn a_model_that_stops_completing_tx_fills_the_ring_and_every_mbuf_comes_back() {
    let g = Group::new("ixstuck", &workspace_bin("testpmd"));
    // After 100 frames the model's TX neither sends nor writes DD back. (UDP ports 23110 to
    // 23113; 23100 and 23101 are ixgbe_vfio_user's.)
    let m = Model::lying(&g, 2, 23110, &["--evil", "stop-completing"]);
    let mut pmd = start(
        &g,
        "testpmd",
        &["-l", "0-1", "-m", "128"],
        &m,
        &["-i", "--forward-mode=io", "--total-num-mbufs=8192"],
    );
    pmd.expect("Start automatic packet forwarding", T);
    // 3,000 frames into port 0, forwarded out of port 1, whose TX stops after about 100.
    let n = 3_000;
    let line = udp_fwd_within(3, 23110, 23113, n, 10_000);
    println!("port 0 -> 1: {line}");
    let ok = count(&line, "ok");
    assert!((100..n as u64).contains(&ok), "{line}");
    assert_eq!(count(&line, "dup"), 0, "{line}");
    // testpmd goes on; the full TX ring holds its mbufs, and only it: none is lost.
    let held = |c: &MbufCensus| c.in_use == c.rx_queues + c.tx_queues;
    let running = eventually(|| MbufCensus::take(&g, "mb_pool_0"), held);
    println!("while the TX ring is stuck: {running:?}");
    // testpmd's ring of 1,024 descriptors, one kept unused, full.
    assert!(held(&running) && running.tx_queues == 1023, "{running:?}");
    // Stopped, the ports give every mbuf back, those the device never completed too. (The
    // pool helper also fails on a pool with more free objects than it has.)
    pmd.send("port stop all");
    pmd.expect("Stopping ports...", T);
    pmd.expect("Done", T);
    let mut pool = g.secondary(HELPER, "4@0", &["pool", "mb_pool_0"]);
    let in_use = number_after(&pool.expect("POOL", T), "in_use=");
    assert!(pool.finish(T).success(), "{}", pool.stderr());
    assert_eq!(in_use, 0, "mbufs the stuck TX ring held did not come back");
    // The frames the ring refused were counted as dropped.
    pmd.send("quit");
    assert!(pmd.finish(T).success(), "{}", pmd.stderr());
    let out = pmd.stdout().join("\n");
    let dropped = out
        .lines()
        .rev()
        .find(|l| l.contains("TX-dropped:"))
        .unwrap_or_else(|| panic!("no TX-dropped in {out}"));
    println!("{dropped}");
    assert!(number_after(dropped, "TX-dropped:") > 0, "{dropped}");
}

#[test]
fn exhausted_rx_ring_is_counted_in_mpc_and_recovers() {
    let g = Group::new("ixmpc", HELPER);
    let m = Model::start(&g, 1, 23010);
    // One queue of 256 descriptors, not polled: 255 are the device's, the rest is dropped.
    let mut h = start(
        &g,
        "port_helper",
        &["-l", "0", "-m", "64"],
        &m,
        &["rx-hold", "0"],
    );
    h.expect("HOLDING", T);
    let send = |n: &str| {
        let (st, out, err) = system_tests::run(
            HELPER,
            &["udp-send", "23010", n, "5000", "52:54:00:82:59:00"],
            T,
        );
        assert!(st.success(), "udp-send: {out} {err}");
    };
    send("1000");
    // Polls once the device has seen the 1,000 frames.
    h.send("poll 1000");
    let missed = h.expect("MISSED", T);
    assert_eq!(
        missed, "MISSED 745 IMISSED 745",
        "the device holds 255 frames of 1,000, and the port's imissed is its MPC"
    );
    // Once polled, the ring is refilled and takes new frames again.
    send("500");
    // proc-info, another process, zeroes the device's counters for the whole group.
    let (st, out, err) = system_tests::run(
        &workspace_bin("proc-info"),
        &["--file-prefix", g.prefix.as_str(), "--", "--xstats-reset"],
        T,
    );
    assert!(st.success(), "{err}");
    assert!(
        out.contains("NIC extended statistics for port 0 cleared"),
        "{out}"
    );
    // Counts once it has received the 255 held and the 500 new (or after 10 s).
    h.send("count 755");
    let got = h.expect("RECEIVED", T);
    println!("{missed}; then {got}");
    assert_eq!(got, "RECEIVED 755 MISSED 0 IMISSED 0");
    assert!(h.finish(T).success());
}

#[test]
fn link_down_and_up_reach_a_callback_in_a_secondary() {
    let g = Group::new("ixlink", &workspace_bin("l2fwd"));
    let mut m = Model::start(&g, 2, 23020);
    let mut l2 = start_l2fwd(&g, &m);
    let mut w = g.secondary(HELPER, "2@0", &["watch-link", "0"]);
    assert_eq!(w.expect("LINK", T), "LINK up=1 speed=10000 full_duplex=1");
    w.expect("WATCHING", T);
    // The primary takes the link-change interrupt and records the link; the secondary's
    // callback sees it.
    m.proc.send("link 0 down");
    assert_eq!(w.expect("LINK", T), "LINK up=0 speed=0 full_duplex=0");
    m.proc.send("link 0 up");
    assert_eq!(w.expect("LINK", T), "LINK up=1 speed=10000 full_duplex=1");
    l2.expect_stderr("net_ixgbe_model0: link change interrupt, link down", T);
    l2.stop_ok();
}

#[test]
fn client_server_mp_on_82599_model_ports_sends_every_frame_once_and_loses_no_mbuf() {
    let g = Group::new("ixcsmp", &workspace_bin("mp_server"));
    let m = Model::start(&g, 2, 23050);
    // One RX queue and a TX queue per client on each port.
    let mut server = start_mp_server(&g, &m);
    let mut clients: Vec<Proc> = (0..2).map(|id| g.mp_client(id)).collect();
    let line = udp_fwd(23050, 23053, 3000, 1000, "-", "-");
    println!("3,000 frames through two clients: {line}");
    assert_eq!(count(&line, "ok"), 3000, "{line}");
    assert_eq!(count(&line, "dup"), 0, "{line}");
    // The TX rings free what the device sent at their next burst: the clients' last frames
    // are still held.
    let after = MbufCensus::take(&g, POOL);
    assert!(after.tx_queues > 0, "{after:?}");

    // Client 1 dies: the server takes its TX queues over and frees what they hold; client 0
    // stops and frees its own. Every mbuf still in use is then an RX buffer.
    clients[1].signal(libc::SIGKILL);
    server.expect_stderr(&format!("client 1 (pid {})", clients[1].pid()), T);
    clients[0].stop_ok();
    let census = eventually(|| MbufCensus::take(&g, POOL), MbufCensus::only_rx_buffers);
    assert!(census.only_rx_buffers(), "{census:?}");
    server.stop_ok();
    let out = server.stdout().join("\n");
    let sent: Vec<u64> = (0..2).map(|c| client_stat(&out, c, "tx")).collect();
    assert!(
        sent.iter().all(|&n| n > 0) && sent.iter().sum::<u64>() == 3000,
        "{out}"
    );
}

/// mp_server on lcores 0-1 with the model's ports, one RX queue and a TX queue for each of
/// two clients on each.
fn start_mp_server(g: &Group, m: &Model) -> Proc {
    let args = ["-p", "0x3", "-n", "2", "-T", "0"];
    let mut server = start(g, "mp_server", &["-l", "0-1", "-m", "128"], m, &args);
    server.expect("mp_server ready", T);
    server
}

/// mp_server and two clients on the model's ports, client 1 armed for fault point `point`,
/// which kills it while udp_fwd sends 1,000 frames from `udp_port`. Checks that
/// the server or client 0 said `repaired`, that no frame came twice and that every mbuf in use after is
/// an RX buffer; returns udp_fwd's line and the server's stdout.
fn client_1_killed_on_model(
    tag: &str,
    udp_port: u16,
    point: &str,
    repaired: &str,
) -> (String, String) {
    let g = Group::new(tag, &workspace_bin("mp_server"));
    let m = Model::start(&g, 2, udp_port);
    let mut server = start_mp_server(&g, &m);
    let mut c0 = g.mp_client(0);
    let mut c1 = g.mp_client_armed(1, point);
    // Half the frames never come back (client 1's): wait 3 s for the rest, not 30.
    let line = udp_fwd_within(3, udp_port, udp_port + 3, 1000, 1000);
    c1.expect_fault(point);
    server.expect_stderr(&format!("client 1 (pid {}) died", c1.pid()), T);
    // The server repairs queues; a put to the pool's ring, whoever puts next.
    let said = |p: &Proc| p.stderr().contains(repaired);
    assert!(
        eventually(|| said(&server) || said(&c0), |s| *s),
        "'{repaired}' on no stderr: {}",
        server.stderr()
    );
    assert_eq!(count(&line, "dup"), 0, "{line}");
    c0.stop_ok();
    let census = eventually(|| MbufCensus::take(&g, POOL), MbufCensus::only_rx_buffers);
    assert!(census.only_rx_buffers(), "{census:?}");
    server.stop_ok();
    (line, server.stdout().join("\n"))
}

#[test]
fn a_client_killed_inside_its_tx_burst_on_82599_model_ports_loses_no_mbuf() {
    // Client 1 dies (a fault point) in the ixgbe TX burst after it wrote descriptors and
    // slots and before it committed them. The server must forget those slots and
    // free the frames of the client's hand.
    let (line, out) = client_1_killed_on_model(
        "ixdeadhand",
        23060,
        "intel.tx.written",
        "TX queue 1: forgot",
    );
    assert_eq!(client_stat(&out, 1, "tx"), 0, "{out}");
    let c1_counted = client_stat(&out, 1, "rx_drop") + client_stat(&out, 1, "drained");
    assert_eq!(count(&line, "ok") + c1_counted, 1000, "{line}\n{out}");
}

#[test]
fn a_client_killed_after_freeing_sent_frames_on_82599_model_ports_loses_none() {
    // Client 1 dies (a fault point) in its TX ring's clean after it put a batch of sent
    // frames back in its lcore's cache (see net::mbuf::free_then_forget) and before the
    // ring forgot them. The server must forget them in the ring before the
    // primary empties the cache: neither freed twice nor lost.
    client_1_killed_on_model(
        "ixdeadclean",
        23070,
        "mempool.pinned.put",
        "sent mbufs its dead poller had freed",
    );
}

#[test]
fn a_client_killed_inside_a_put_to_the_pool_ring_on_82599_model_ports_loses_none() {
    // Client 1 dies (a fault point) as its lcore cache overflows, after the older objects
    // went into the pool's ring and before the cache's count shrank. The put is
    // repaired before the primary empties the cache: no object is free twice or lost.
    client_1_killed_on_model(
        "ixdeadput",
        23080,
        "mempool.put.published",
        "finished a dead process's put",
    );
}

#[test]
fn rss_spreads_flows_over_the_queues_of_two_processes() {
    let g = Group::new("ixrss", &workspace_bin("symmetric_mp"));
    let m = Model::start(&g, 2, 23030);
    // symmetric_mp (primary) polls queue 0 of both ports, testpmd (secondary) queue 1.
    let mut primary = start_symmetric_primary(&g, &m);
    // stdout and stderr are read by different threads: wait for the log line.
    primary.expect_stderr("net_ixgbe_model1: RSS over 2 queues", T);
    let mut secondary = g.secondary(&workspace_bin("testpmd"), "2@1,3@1", &TESTPMD_QUEUE_1);
    secondary.expect("Start automatic packet forwarding", T);
    let [rss, got] = udp_fwd_lines(
        23030,
        23033,
        3000,
        1000,
        ["-", "-"],
        &["2"],
        ["RSS per_queue=", "RECEIVED"],
    );
    println!("3,000 frames through two processes: {got}");
    assert_eq!(count(&got, "ok"), 3000, "{got}");
    secondary.signal(libc::SIGINT);
    secondary.expect("  ---------------------- Forward statistics for port 0", T);
    let from_secondary = secondary.expect("  RX-packets: ", T);
    assert!(secondary.finish(T).success());
    primary.signal(libc::SIGINT);
    let from_primary = primary.expect("Port 0: RX - ", T);
    assert!(primary.finish(T).success());
    // Nothing else reaches the model's wire: the shares are exactly the prediction.
    check_rss_shares(
        &[
            number_after(&from_primary, "RX - "),
            number_after(&from_secondary, "RX-packets:"),
        ],
        &rss,
        0,
    );
}

#[test]
fn ports_stopped_and_started_while_two_processes_forward_keep_every_mbuf() {
    let g = Group::new("ixstop", &workspace_bin("testpmd"));
    let m = Model::generating(&g, 2, 64);
    let fwd = |proc_id: &'static str| {
        [
            "--forward-mode=io",
            "--rxq=2",
            "--txq=2",
            "--num-procs=2",
            "--total-num-mbufs=8192",
            proc_id,
        ]
    };
    // The primary forwards queue 0 of each port and takes commands; a secondary queue 1.
    let mut primary = start(
        &g,
        "testpmd",
        &["-l", "0-1", "-m", "128"],
        &m,
        &[&fwd("--proc-id=0")[..], &["-i"]].concat(),
    );
    primary.expect("Start automatic packet forwarding", T);
    let mut secondary = g.secondary(&workspace_bin("testpmd"), "2@0,3@1", &fwd("--proc-id=1"));
    secondary.expect("Start automatic packet forwarding", T);
    let in_use = || {
        let mut pool = g.secondary(HELPER, "4@0", &["pool", "mb_pool_0"]);
        number_after(&pool.expect("POOL", T), "in_use=")
    };
    for round in 0..20 {
        // Frames flow between the rounds.
        std::thread::sleep(std::time::Duration::from_millis(50));
        primary.send("port stop all");
        primary.expect("Stopping ports...", T);
        primary.expect("Done", T);
        // Stopped: the rings gave their mbufs back, and no burst kept any. (The pool
        // helper also fails on a pool with more free objects than it has.)
        if round % 5 == 0 {
            assert_eq!(in_use(), 0, "round {round}");
        }
        primary.send("port start all");
        primary.expect("Starting ports...", T);
        primary.expect("Done", T);
    }
    let out = primary.stdout().join("\n");
    assert!(!out.contains("Failed to"), "{out}");
    secondary.signal(libc::SIGINT);
    let from_secondary = secondary.expect("  RX-packets: ", T);
    assert!(secondary.finish(T).success(), "{}", secondary.stderr());
    primary.signal(libc::SIGINT);
    let from_primary = primary.expect("  RX-packets: ", T);
    assert!(primary.finish(T).success(), "{}", primary.stderr());
    println!("forwarded: primary {from_primary}; secondary {from_secondary}");
    let forwarded =
        number_after(&from_primary, "RX-packets:") + number_after(&from_secondary, "RX-packets:");
    assert!(forwarded > 0);
}

#[test]
fn clients_killed_at_full_rate_on_82599_model_ports_lose_no_mbuf() {
    // Frames at the model's full rate; client 1 SIGKILLed ten times at different moments:
    // inside its TX bursts, its TX ring's frees, its cache's puts to the pool's ring, or
    // between them. After each kill the ports are unplugged so that nothing moves while
    // proc-info counts: every mbuf in use must be in an RX or TX ring (a negative count
    // would be mbufs free twice).
    let g = Group::new("ixkills", &workspace_bin("mp_server"));
    let mut m = Model::generating(&g, 2, 64);
    let mut server = start_mp_server(&g, &m);
    let mut c0 = g.mp_client(0);
    let mut c1 = g.mp_client(1);
    let mut lost = Vec::new();
    // More kills for a measurement: RPMD_KILLS=40.
    let kills = std::env::var("RPMD_KILLS").map_or(10, |v| v.parse().unwrap_or(10));
    for k in 0..kills {
        std::thread::sleep(std::time::Duration::from_millis(30 + k * 37));
        c1.signal(libc::SIGKILL);
        server.expect_stderr(&format!("client 1 (pid {})", c1.pid()), T);
        c1.finish(T);
        // The server has taken its TX queues over and waits (half a second at most) for
        // them to send.
        std::thread::sleep(std::time::Duration::from_millis(600));
        m.proc.send("link 0 down");
        m.proc.send("link 1 down");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let c = MbufCensus::take(&g, POOL);
        lost.push(c.in_use as i64 - c.rx_queues as i64 - c.tx_queues as i64);
        m.proc.send("link 0 up");
        m.proc.send("link 1 up");
        c1 = g.mp_client(1);
    }
    println!("mbufs lost after each kill (running total): {lost:?}");
    assert!(lost.iter().all(|n| *n == 0), "{lost:?}");
    c1.stop_ok();
    c0.stop_ok();
    server.stop_ok();
}

#[test]
fn secondaries_killed_holding_bursts_on_82599_model_ports_lose_no_mbuf() {
    // Each testpmd secondary takes queue 1 of both ports over from the last, which died
    // holding a burst it received: the buffers it receives were posted by another process
    // (the primary at start, then the dead one), and must be held from the take-over on.
    let g = Group::new("ixkills", &workspace_bin("symmetric_mp"));
    let m = Model::generating(&g, 2, 64);
    let mut primary = start_symmetric_primary(&g, &m);
    for k in 0..20u32 {
        let point = format!("ethdev.rx_burst.returned@{}", 1 + k * 7 % 20);
        let mut s = g.secondary_armed(
            &workspace_bin("testpmd"),
            "2@1,3@1",
            &TESTPMD_QUEUE_1,
            &point,
        );
        s.expect_fault(&point);
    }
    // Cables out: the traffic stops, so the count holds still.
    let mut m = m;
    m.proc.send("link 0 down");
    m.proc.send("link 1 down");
    let held_by_queues = |c: &MbufCensus| c.in_use == c.rx_queues + c.tx_queues;
    let after = eventually(|| MbufCensus::take(&g, POOL), held_by_queues);
    assert!(held_by_queues(&after), "{after:?}");
    primary.signal(libc::SIGINT);
    assert!(primary.finish(T).success());
}
