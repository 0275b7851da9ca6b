//! net_virtio_user against a vhost-user backend that lies on purpose (`vhost_liar`), through
//! the real socket: used ids past the ring or returned twice, used lengths beyond the
//! buffer, a used index ahead of the chains made available, a device that stops completing
//! TX. For each, testpmd forwards the backend's frames back to it through the one port,
//! and the test checks that testpmd lives on, that the lie is counted in the port's xstats
//! and logged once, that the frames the lie spared came back intact, and that no mbuf is
//! lost or freed twice: held by the queues while forwarding, all back in the pool once the
//! port stops. Honest runs on packed rings too (the backend lies on split rings used in
//! any order only), and on packed and on split rings used in order, where the backend
//! completes TX chains in batches.

use std::time::Duration;
use system_tests::devices::Liar;
use system_tests::{count, eventually, proc_info_json, workspace_bin, Group, MbufCensus, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");
/// testpmd's mbuf pool.
const POOL: &str = "mb_pool_0";
/// Frames the backend sends, at `PPS`.
const FRAMES: u64 = 7_000;
const PPS: u32 = 20_000;
/// The lies the driver counts, by xstat name without the direction.
const KINDS: [&str; 3] = ["bad_used_id", "bad_used_len", "bad_used_idx"];

/// One test at a time: each runs testpmd's forwarding lcore on a CPU of its own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a run against the liar left: its result line, the port's xstats while forwarding,
/// the mbufs in the pool after the port stopped, and testpmd's stdout and stderr.
struct Run {
    liar: String,
    xstats: serde_json::Value,
    forwarding: MbufCensus,
    after_stop: u64,
    out: String,
    err: String,
}

impl Run {
    fn xstat(&self, name: &str) -> u64 {
        self.xstats["ports"][0]["xstats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no xstat {name} in {}", self.xstats))
    }

    /// How many times testpmd logged lie `kind` (`bad_used_id`...).
    fn logged(&self, kind: &str) -> usize {
        let counted = format!("(counted as {kind}, logged once)");
        self.err.lines().filter(|l| l.contains(&counted)).count()
    }

    /// Lie `kind` was logged once, on the queue in `dir`, and the others at most once a
    /// queue; the frames the liar sent honestly came back intact, once each.
    fn check(&self, dir: &str, kind: &str) {
        assert_eq!(self.logged(kind), 1, "{kind}: {}", self.err);
        let on_queue = format!("virtio queue virtio0_{dir}");
        assert!(
            self.err
                .lines()
                .any(|l| l.contains(&on_queue) && l.contains(kind)),
            "{kind} not logged on a {dir} queue: {}",
            self.err
        );
        for k in KINDS {
            assert!(self.logged(k) <= 2, "{k} logged more than once a queue");
        }
        let l = &self.liar;
        assert_eq!(count(l, "sent"), FRAMES, "{l}");
        assert_eq!(count(l, "ok") + count(l, "lost_to_lies"), FRAMES, "{l}");
        assert_eq!(count(l, "bad") + count(l, "dup"), 0, "{l}");
        assert!(count(l, "lies") > 0, "{l}");
    }
}

/// The rings the port runs on.
#[derive(Clone, Copy)]
enum Rings {
    Split,
    /// Packed: the backend is honest.
    Packed,
    /// Packed and used in order: the backend is honest, and completes TX in batches.
    PackedInOrder,
    /// Split and used in order: the backend is honest, and completes TX in batches.
    SplitInOrder,
}

/// Runs testpmd (io forwarding, one net_virtio_user port) against `vhost_liar` telling
/// `lie` on `rings`, until the liar has its count; then stops the port and quits.
fn run(tag: &str, lie: &str, rings: Rings) -> Run {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let g = Group::new(tag, &workspace_bin("testpmd"));
    if !matches!(rings, Rings::Split) {
        assert_eq!(
            lie, "none",
            "the backend lies on split rings in any order only"
        );
    }
    let mut liar = match rings {
        Rings::Split => Liar::start(&g, lie, FRAMES, PPS),
        Rings::Packed => Liar::start_packed(&g, FRAMES, PPS),
        Rings::PackedInOrder => Liar::start_packed_in_order(&g, FRAMES, PPS),
        Rings::SplitInOrder => Liar::start_split_in_order(&g, FRAMES, PPS),
    };
    let vdev = liar.vdev(0);
    let mut pmd = g.start(&[
        "-l",
        "0-1",
        "-m",
        "128",
        "--vdev",
        &vdev,
        "--",
        "-i",
        "--forward-mode=io",
        "--total-num-mbufs=8192",
    ]);
    pmd.expect("Start automatic packet forwarding", T);
    let line = liar.proc.expect("LIAR ", Duration::from_secs(60));
    println!("{lie}: {line}");
    // While forwarding, every mbuf in use is one the queues hold: none lost on the way.
    // (testpmd holds a burst for a moment between receiving and sending it.)
    let held = |c: &MbufCensus| c.in_use == c.rx_queues + c.tx_queues;
    let forwarding = eventually(|| MbufCensus::take(&g, POOL), held);
    assert!(held(&forwarding), "{forwarding:?}");
    let xstats = proc_info_json(&g, &["--xstats"]);
    let lies: Vec<String> = ["rx", "tx"]
        .iter()
        .flat_map(|dir| KINDS.map(|k| format!("{dir}_{k}")))
        .map(|name| format!("{name}={}", xstats["ports"][0]["xstats"][&name]))
        .collect();
    println!(
        "{lie}: xstats {}; while forwarding {forwarding:?}",
        lies.join(" ")
    );
    pmd.send("port stop all");
    pmd.expect("Stopping ports...", T);
    pmd.expect("Done", T);
    // The pool helper also fails when the pool holds more free mbufs than it has.
    let mut pool = g.secondary(HELPER, "4@0", &["pool", POOL]);
    let after_stop = count(&pool.expect("POOL", T), "in_use");
    assert!(pool.finish(T).success(), "{}", pool.stderr());
    pmd.send("quit");
    assert!(pmd.finish(T).success(), "testpmd: {}", pmd.stderr());
    // testpmd closed the port: the liar sees the frontend hang up.
    assert!(
        liar.proc.finish(T).success(),
        "vhost_liar: {}",
        liar.proc.stderr()
    );
    let err = pmd.stderr();
    let out = pmd.stdout().join("\n");
    let totals: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("-packets:"))
        .map(str::trim)
        .collect();
    println!(
        "{lie}: testpmd's totals: {}",
        totals[totals.len().saturating_sub(2)..].join("; ")
    );
    for l in err.lines().filter(|l| l.contains("logged once")) {
        println!("{lie}: testpmd logged: {l}");
    }
    Run {
        liar: line,
        xstats,
        forwarding,
        after_stop,
        out,
        err,
    }
}

/// Every frame came back intact, no lie was told or counted, and no mbuf leaked.
fn check_honest(r: &Run) {
    for dir in ["rx", "tx"] {
        for k in KINDS {
            assert_eq!(r.xstat(&format!("{dir}_{k}")), 0, "{}", r.xstats);
        }
    }
    assert_eq!(count(&r.liar, "ok"), FRAMES, "{}", r.liar);
    assert_eq!(count(&r.liar, "lies"), 0, "{}", r.liar);
    assert!(!r.err.contains("logged once"), "{}", r.err);
    assert_eq!(r.after_stop, 0, "mbufs leaked");
}

/// The backend completed TX in batches: fewer used elements than chains.
fn check_batched(r: &Run) {
    let (chains, batches) = (count(&r.liar, "tx_completed"), count(&r.liar, "tx_batches"));
    assert!(0 < batches && batches < chains, "{}", r.liar);
}

#[test]
fn an_honest_backend_counts_no_lie() {
    let r = run("vl_honest", "none", Rings::Split);
    assert!(r.err.contains("on split rings\n"), "{}", r.err);
    check_honest(&r);
}

#[test]
fn an_honest_backend_on_packed_rings_gets_every_frame_back_intact() {
    let r = run("vl_packed", "none", Rings::Packed);
    assert!(r.err.contains("on packed rings"), "{}", r.err);
    assert!(!r.err.contains("on packed rings, in order"), "{}", r.err);
    check_honest(&r);
}

#[test]
fn an_honest_backend_on_packed_rings_in_order_gets_every_frame_back_intact() {
    let r = run("vl_inorder", "none", Rings::PackedInOrder);
    assert!(r.err.contains("on packed rings, in order"), "{}", r.err);
    check_honest(&r);
    check_batched(&r);
}

#[test]
fn an_honest_backend_on_split_rings_in_order_gets_every_frame_back_intact() {
    let r = run("vl_sinorder", "none", Rings::SplitInOrder);
    assert!(r.err.contains("on split rings, in order"), "{}", r.err);
    check_honest(&r);
    check_batched(&r);
}

#[test]
fn used_ids_past_the_ring_are_skipped_and_counted() {
    let r = run("vl_badid", "bad-id", Rings::Split);
    r.check("rx", "bad_used_id");
    // testpmd polls RX all along: it saw every lie told.
    assert_eq!(r.xstat("rx_bad_used_id"), count(&r.liar, "lies"));
    assert_eq!(r.after_stop, 0, "mbufs leaked");
}

#[test]
fn a_used_id_returned_twice_is_skipped_and_counted() {
    let r = run("vl_dupid", "dup-id", Rings::Split);
    r.check("tx", "bad_used_id");
    // TX looks at the used ring when it sends: the last lies may still wait there.
    let seen = r.xstat("tx_bad_used_id");
    assert!(seen > 0 && seen <= count(&r.liar, "lies"), "{}", r.xstats);
    assert_eq!(r.after_stop, 0, "mbufs leaked or freed twice");
}

#[test]
fn a_used_length_beyond_the_buffer_drops_the_frame_and_is_counted() {
    let r = run("vl_len", "long-len", Rings::Split);
    r.check("rx", "bad_used_len");
    let lies = count(&r.liar, "lies");
    assert_eq!(lies, FRAMES / 7, "{}", r.liar);
    assert_eq!(r.xstat("rx_bad_used_len"), lies);
    assert_eq!(r.after_stop, 0, "mbufs leaked");
}

#[test]
fn a_used_index_past_the_chains_in_flight_is_clamped_and_counted() {
    let r = run("vl_idx", "used-idx", Rings::Split);
    r.check("tx", "bad_used_idx");
    assert!(r.xstat("tx_bad_used_idx") > 0, "{}", r.xstats);
    // The entries past the chains in flight name ids past the ring.
    assert!(r.xstat("tx_bad_used_id") > 0, "{}", r.xstats);
    assert_eq!(r.after_stop, 0, "mbufs leaked");
}

#[test]
fn a_backend_that_stops_completing_tx_fills_the_ring_and_loses_no_mbuf() {
    let r = run("vl_stop", "stop-tx", Rings::Split);
    let l = &r.liar;
    // 100 frames went out and came back; then the ring filled and testpmd dropped the rest.
    assert_eq!(count(l, "tx_completed"), 100, "{l}");
    assert_eq!(count(l, "ok"), 100, "{l}");
    assert_eq!(count(l, "bad") + count(l, "dup"), 0, "{l}");
    // The TX ring (net_virtio_user's default of 256) full.
    assert_eq!(r.forwarding.tx_queues, 256, "{:?}", r.forwarding);
    let dropped = r
        .out
        .lines()
        .rev()
        .find(|l| l.contains("TX-dropped:"))
        .unwrap_or_else(|| panic!("no TX-dropped in {}", r.out));
    println!("{dropped}");
    assert!(
        system_tests::number_after(dropped, "TX-dropped:") > 0,
        "{dropped}"
    );
    for dir in ["rx", "tx"] {
        for k in KINDS {
            assert_eq!(r.xstat(&format!("{dir}_{k}")), 0, "{}", r.xstats);
        }
    }
    assert_eq!(
        r.after_stop, 0,
        "the full TX ring's mbufs did not come back"
    );
}
