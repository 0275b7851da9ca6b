//! Forwarding secondaries SIGKILLed under traffic, 100 times each, lose no mbuf: what a
//! killed app held between `rx_burst` and `tx_burst` goes back to its pool
//! (ARCHITECTURE.md, "Holds"). Half the kills land at a random moment, half at a fault
//! point with a received burst in hand. Two net_ring ports with two queue pairs: the primary
//! forwards queue 0, the secondary queue 1, while `port_helper inject` offers frames
//! spread over both queues and counts its pool; after the last kill a secondary takes
//! queue 1 for good and every mbuf must come back.

use std::time::{Duration, Instant};
use system_tests::{workspace_bin, Group, T};

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

/// Starts `program` as the primary with EAL options `eal` and app options `app` plus
/// `--proc-id 0`, then `KILLS` times a secondary on lcores `lcores` with `--proc-id 1`,
/// killed at a random moment once it says `ready` or holding a burst, then one that stays. Checks the
/// injector's pool is whole once the traffic has passed.
fn kills_lose_nothing(
    test: &str,
    program: &str,
    eal: &[&str],
    lcores: &str,
    app: &[&str],
    ready: &str,
) {
    let g = Group::new(test, &workspace_bin(program));
    let ports = ["--vdev", "net_ring0", "--vdev", "net_ring1"];
    let mut p0 = g.start(
        &[
            eal,
            &["-m", "128"],
            &ports,
            &["--"],
            app,
            &["--proc-id", "0"],
        ]
        .concat(),
    );
    p0.expect(ready, T);
    let secondary = [app, &["--proc-id", "1"]].concat();
    let bin = workspace_bin(program);
    let mut col = g.secondary(
        HELPER,
        "5@0",
        &["collect", "net_ring1", FRAMES, "40", "-", "-", "2"],
    );
    col.expect("COLLECTING", T);
    let mut inj = g.secondary(HELPER, "6@0", &["inject", "net_ring0", FRAMES, "2", PPS]);
    let mut moments = Moments::new();
    let start = Instant::now();
    for k in 0..KILLS {
        if k % 2 == 0 {
            // Killed at a random moment.
            let mut s = g.secondary(&bin, lcores, &secondary);
            s.expect(ready, T);
            std::thread::sleep(moments.next(40));
            s.kill();
        } else {
            // Killed holding a burst it received: at the Nth, N from 1 to 20.
            let point = format!("{HELD}@{}", 1 + moments.next(20).as_millis());
            let mut s = g.secondary_armed(&bin, lcores, &secondary, &point);
            s.expect_fault(&point);
        }
    }
    println!(
        "{program}: {KILLS} secondaries killed under traffic in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let mut last = g.secondary(&bin, lcores, &secondary);
    last.expect(ready, T);
    let injected = inj.expect("INJECTED", Duration::from_secs(120));
    let pool = inj.expect("POOL", Duration::from_secs(60));
    let collected = col.expect("COLLECTED", Duration::from_secs(150));
    println!("{program}: {injected}; {collected}; {pool}");
    assert_eq!(pool, "POOL in_use=0", "mbufs lost to the kills");
    for p in [&mut last, &mut p0] {
        p.stop_ok();
    }
}

#[test]
fn killed_symmetric_mp_secondaries_lose_no_mbuf() {
    kills_lose_nothing(
        "killsym",
        "symmetric_mp",
        &["-l", "0"],
        "1@1",
        &["-p", "0x3", "--num-procs", "2"],
        "Finished Process Init",
    );
}

#[test]
fn killed_testpmd_secondaries_lose_no_mbuf() {
    kills_lose_nothing(
        "killpmd",
        "testpmd",
        &["-l", "0-1"],
        "2@0,3@1",
        &["--rxq", "2", "--txq", "2", "--num-procs", "2"],
        "Start automatic packet forwarding",
    );
}
