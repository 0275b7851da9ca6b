//! Forwarding secondaries SIGKILLed under traffic, 100 times each, lose no mbuf: what a
//! killed app held between `rx_burst` and `tx_burst` goes back to its pool
//! (ARCHITECTURE.md, "Holds"). Half the kills land at a random moment, half at a fault
//! point with a received burst in hand. Two net_ring ports: with two queue pairs, the
//! primary (symmetric_mp, testpmd) forwards queue 0 and the secondary queue 1; with one
//! (l2fwd), the primary only holds the ports. `port_helper inject` offers frames spread
//! over the queues and counts its pool; after the last kill a secondary forwards for good
//! and every mbuf must come back.

use std::time::{Duration, Instant};
use system_tests::{workspace_bin, Group, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");
const KILLS: u32 = 100;
/// The fault point where an app holds the packets `rx_burst` gave it.
const HELD: &str = "ethdev.rx_burst.returned";
/// Frames offered, and their rate: enough to keep traffic flowing through every kill.
const FRAMES: &str = "400000";
const PPS: &str = "20000";

/// A small xorshift generator, seeded from the clock and printed, so a failing run can be
/// told apart from another (the kill moments are what varies).
struct Moments(u64);

impl Moments {
    fn new() -> Moments {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        println!("kill moments seed {seed}");
        Moments(seed)
    }
    /// A wait of 0 to `max_ms` milliseconds.
    fn next(&mut self, max_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % (max_ms * 1000))
    }
}

/// A process of a kill test: its program, the EAL options or lcores it is given, its app
/// options, the line it prints once it forwards, and how it is stopped cleanly.
struct App<'a> {
    program: &'a str,
    eal: &'a [&'a str],
    app: &'a [&'a str],
    ready: &'a str,
    stop: fn(&mut Proc),
}

/// Stops a test helper: its standard input closes, and it must exit cleanly.
fn close_input(p: &mut Proc) {
    let status = p.finish(T);
    assert!(status.success(), "{status}; stderr: {}", p.stderr());
}

/// Starts `primary` on two net_ring ports with `queues` queue pairs each, then `KILLS`
/// times `secondary` (its `eal`: the lcores, e.g. `1@1`), killed at a random moment once
/// ready or holding a burst, then one that stays. Checks the injector's pool is whole once
/// the traffic has passed.
fn kills_lose_nothing(test: &str, primary: App, secondary: App, queues: &str) {
    let g = Group::new(test, &workspace_bin(primary.program));
    let ports = ["--vdev", "net_ring0", "--vdev", "net_ring1"];
    let mut p0 = g.start(&[primary.eal, &["-m", "128"], &ports, &["--"], primary.app].concat());
    p0.expect(primary.ready, T);
    let (bin, lcores, app, ready) = (
        workspace_bin(secondary.program),
        secondary.eal[0],
        secondary.app,
        secondary.ready,
    );
    let mut col = g.secondary(
        HELPER,
        "5@0",
        &["collect", "net_ring1", FRAMES, "5", "-", "-", queues],
    );
    col.expect("COLLECTING", T);
    let mut inj = g.secondary(HELPER, "6@0", &["inject", "net_ring0", FRAMES, queues, PPS]);
    let mut moments = Moments::new();
    let start = Instant::now();
    for k in 0..KILLS {
        if k % 2 == 0 {
            // Killed at a random moment.
            let mut s = g.secondary(&bin, lcores, app);
            s.expect(ready, T);
            std::thread::sleep(moments.next(40));
            s.kill();
        } else {
            // Killed holding a burst it received: at the Nth, N from 1 to 20.
            let point = format!("{HELD}@{}", 1 + moments.next(20).as_millis());
            let mut s = g.secondary_armed(&bin, lcores, app, &point);
            s.expect_fault(&point);
        }
    }
    let program = secondary.program;
    println!(
        "{program}: {KILLS} secondaries killed under traffic in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let mut last = g.secondary(&bin, lcores, app);
    last.expect(ready, T);
    // Traffic that stops names its stage: the injector, the forwarding secondary, the
    // primary, or the collector.
    let others = |p0: &Proc, last: &Proc, col: &Proc| {
        format!(
            "\nlast {program} secondary's stderr: {}\nprimary's stderr: {}\ncollector's stderr: {}",
            last.stderr(),
            p0.stderr(),
            col.stderr()
        )
    };
    let injected = inj
        .try_expect("INJECTED", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("injector: {e}{}", others(&p0, &last, &col)));
    let pool = inj.expect("POOL", Duration::from_secs(60));
    let collected = col
        .try_expect("COLLECTED", Duration::from_secs(150))
        .unwrap_or_else(|e| panic!("collector: {e}{}", others(&p0, &last, &col)));
    println!("{program}: {injected}; {collected}; {pool}");
    assert_eq!(pool, "POOL in_use=0", "mbufs lost to the kills");
    // A frame twice, or one that is not what was sent: an mbuf freed while in use.
    assert!(
        collected.contains(" bad=0 dup=0 "),
        "frames corrupted by the kills: {collected}"
    );
    (secondary.stop)(&mut last);
    (primary.stop)(&mut p0);
}

#[test]
fn killed_symmetric_mp_secondaries_lose_no_mbuf() {
    let app =
        |id: &'static str| -> Vec<&'static str> { system_tests::symmetric_mp_args(id).to_vec() };
    let ready = "Finished Process Init";
    kills_lose_nothing(
        "killsym",
        App {
            program: "symmetric_mp",
            eal: &["-l", "0"],
            app: &app("0"),
            ready,
            stop: Proc::stop_ok,
        },
        App {
            program: "symmetric_mp",
            eal: &["1@1"],
            app: &app("1"),
            ready,
            stop: Proc::stop_ok,
        },
        "2",
    );
}

#[test]
fn killed_testpmd_secondaries_lose_no_mbuf() {
    let app = |id: &'static str| -> Vec<&'static str> {
        vec![
            "--rxq",
            "2",
            "--txq",
            "2",
            "--num-procs",
            "2",
            "--proc-id",
            id,
        ]
    };
    let ready = "Start automatic packet forwarding";
    kills_lose_nothing(
        "killpmd",
        App {
            program: "testpmd",
            eal: &["-l", "0-1"],
            app: &app("0"),
            ready,
            stop: Proc::stop_ok,
        },
        App {
            program: "testpmd",
            eal: &["2@0,3@1"],
            app: &app("1"),
            ready,
            stop: Proc::stop_ok,
        },
        "2",
    );
}

#[test]
fn killed_l2fwd_secondaries_lose_no_mbuf() {
    // l2fwd as a secondary forwards on ports its primary started; this primary polls none.
    kills_lose_nothing(
        "killl2",
        App {
            program: "port_helper",
            eal: &["-l", "0"],
            app: &["serve-ports", "1"],
            ready: "PORTS STARTED",
            stop: close_input,
        },
        App {
            program: "l2fwd",
            eal: &["1@1"],
            app: &["-p", "0x3", "-q", "2", "-T", "0"],
            ready: "Lcore 1: RX port 1",
            stop: Proc::stop_ok,
        },
        "1",
    );
}
