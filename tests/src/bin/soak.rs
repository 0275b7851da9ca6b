//! soak: two groups forward traffic for a while as their secondaries and tools are started
//! and SIGKILLed at random, then each primary is killed and started again. One group is
//! symmetric_mp (a primary and a secondary sharing two net_ring ports, one queue each), the
//! other client_server_mp (mp_server and two mp_clients on two net_ring ports); dumpcap and
//! proc-info come and go on both (a killed forwarder starts again within a second, a tool
//! when next picked). At the end it says what was killed, where every offered
//! frame went, which mbufs are still in use against the baseline, and how much each
//! primary's memory grew.
//!
//! ```text
//! soak [--seed N] [--pps N] [--max-rss-growth-kib N] [--verbose] MINUTES
//! ```
//! It exits with 1 when mbufs are in use above the baseline, a primary died or grew more
//! than the bound, a process exited by itself, a frame came back twice or damaged, or a
//! restarted primary did not take its group over; with 2 when it could not run. The seed
//! (printed first) picks every action and delay: give it again to replay a run.
//!
//! The traffic source is this program too, run as a secondary of each group:
//! `soak [EAL options] -- traffic IN_PORT RXQS OUT_PORT TXQS PPS` puts PPS frames a second
//! on IN_PORT's RX rings (by RSS hash over RXQS queues; a frame whose ring is full is
//! dropped there, as by a NIC with no descriptor free), takes what comes out of OUT_PORT's
//! TXQS TX rings, and on a line `stop` (or end of input) stops sending, takes what is still
//! coming for a second of quiet and prints its counts.

use net::mbuf_ring::{MbufRing, MAX_BURST};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use system_tests::frames::{build_frame, check_frame, dumpcap, rss_queue};
use system_tests::{client_stat, count, proc_info_json, workspace_bin, Group, Proc, T};

const USAGE: &str = "usage: soak [--seed N] [--pps N] [--max-rss-growth-kib N] [--verbose] MINUTES";
/// Frames a second each group is offered, unless `--pps` says otherwise.
const DEFAULT_PPS: u64 = 10_000;
/// How much a primary's resident memory may grow over the run, unless told otherwise.
const DEFAULT_MAX_RSS_GROWTH_KIB: u64 = 4096;
/// The traffic source's own pool: enough for every RX and TX ring of a port pair to fill.
const SOURCE_POOL: u32 = 16_383;
/// The pause between two actions is drawn from this range (milliseconds).
const PAUSE_MS: (u64, u64) = (100, 1500);
/// How long a killed forwarder stays down (milliseconds): its queues fill meanwhile.
const DOWN_MS: (u64, u64) = (50, 1000);
/// Traffic runs this long before the primaries' memory is first read.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long a secondary may take to notice its primary's death and exit.
const SECONDARY_EXIT: Duration = Duration::from_secs(5);
/// The traffic source stops taking frames after this long without one.
const QUIET: Duration = Duration::from_secs(1);
/// ... or after this long since it was told to stop, whatever still comes.
const MAX_DRAIN: Duration = Duration::from_secs(10);
/// Between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// The most frames the traffic source puts on the RX rings at once.
const BURST: u64 = 64;
/// The rings frames pass through between the ports, by name: the ports' own and
/// mp_server's client rings (the pools' rings hold free mbufs, not frames).
const FRAME_RINGS: &[&str] = &["net_ring", "MProc_Client"];
/// How many of a primary's last warnings the report quotes.
const LAST_WARNINGS: usize = 5;
/// The lcore of dumpcap (proc-info takes 127 itself).
const DUMPCAP_LCORE: u32 = 126;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--") {
        if args.get(at + 1).map(String::as_str) == Some("traffic") {
            return traffic(&args);
        }
    }
    let opts = match Options::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!(
        "soak: seed {} ({} min, {} frames/s per group; replay with --seed {})",
        opts.seed, opts.minutes, opts.pps, opts.seed
    );
    // The helpers of the tests panic on what they did not expect (a process that does not
    // start, a tool that fails): that ends the run, with every process it started killed
    // and the groups' files removed on the way out.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| soak(&opts))) {
        Ok(true) => println!("soak: passed"),
        Ok(false) => std::process::exit(1),
        Err(_) => {
            eprintln!(
                "soak: aborted (seed {}): see the message above; replay with --seed {}",
                opts.seed, opts.seed
            );
            std::process::exit(2);
        }
    }
}

/// What the command line asked for.
struct Options {
    minutes: f64,
    seed: u64,
    pps: u64,
    max_rss_growth_kib: u64,
    verbose: bool,
}

/// A command line soak does not understand.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, UsageError> {
        fn number<N: std::str::FromStr>(opt: &str, v: Option<&String>) -> Result<N, UsageError> {
            v.and_then(|v| v.parse().ok())
                .ok_or_else(|| UsageError(format!("{opt} needs a number")))
        }
        let mut o = Options {
            minutes: 0.0,
            seed: seed_from_clock(),
            pps: DEFAULT_PPS,
            max_rss_growth_kib: DEFAULT_MAX_RSS_GROWTH_KIB,
            verbose: false,
        };
        let mut minutes = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--seed" => o.seed = number(a, it.next())?,
                "--pps" => o.pps = number(a, it.next())?,
                "--max-rss-growth-kib" => o.max_rss_growth_kib = number(a, it.next())?,
                "--verbose" => o.verbose = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                _ if minutes.is_none() => minutes = Some(number::<f64>("MINUTES", Some(a))?),
                other => return Err(UsageError(format!("unexpected argument '{other}'"))),
            }
        }
        o.minutes = minutes.ok_or_else(|| UsageError("give the minutes to run".into()))?;
        if o.minutes.is_nan() || o.minutes <= 0.0 || o.pps == 0 {
            return Err(UsageError("MINUTES and --pps must be above 0".into()));
        }
        Ok(o)
    }
}

fn seed_from_clock() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64) << 32
}

/// splitmix64: a small generator whose whole state is the seed, so a run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, (lo, hi): (u64, u64)) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The programs the soak starts and kills.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum App {
    SymmetricMp,
    MpClient,
    Dumpcap,
    ProcInfo,
}

impl App {
    fn name(self) -> &'static str {
        match self {
            App::SymmetricMp => "symmetric_mp",
            App::MpClient => "mp_client",
            App::Dumpcap => "dumpcap",
            App::ProcInfo => "proc-info",
        }
    }
}

/// What became of the processes of one app.
#[derive(Default)]
struct Fates {
    started: u64,
    killed: u64,
    /// Exited by themselves before the kill: proc-info that finished, or a process that
    /// should have kept running (counted in `unexpected` too).
    exited: u64,
    unexpected: Vec<String>,
}

/// The two kinds of group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Topology {
    Symmetric,
    ClientServer,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::Symmetric => "symmetric_mp",
            Topology::ClientServer => "client_server_mp",
        }
    }

    fn primary_program(self) -> &'static str {
        match self {
            Topology::Symmetric => "symmetric_mp",
            Topology::ClientServer => "mp_server",
        }
    }

    /// The primary's own options (after `--`) and the line it prints once it forwards.
    fn primary_args(self) -> (&'static [&'static str], &'static str) {
        match self {
            Topology::Symmetric => (
                &["-p", "0x3", "--num-procs", "2", "--proc-id", "0"],
                "Finished Process Init",
            ),
            // -T 1: the server prints its clients' counts every second; the last ones tell
            // what it dropped and took back.
            Topology::ClientServer => (&["-p", "0x3", "-n", "2", "-T", "1"], "mp_server ready"),
        }
    }

    /// Forwarder `k` as its command line names it.
    fn forwarder_label(self, k: u16) -> String {
        match self {
            Topology::Symmetric => format!("symmetric_mp --proc-id {}", k + 1),
            Topology::ClientServer => format!("mp_client -n {k}"),
        }
    }

    /// The app of the secondaries that forward, and how many there are.
    fn forwarders(self) -> (App, u16) {
        match self {
            Topology::Symmetric => (App::SymmetricMp, 1),
            Topology::ClientServer => (App::MpClient, 2),
        }
    }

    /// RX queues of the port frames come in on, TX queues of the port they leave by.
    fn queues(self) -> (u16, u16) {
        match self {
            Topology::Symmetric => (2, 2),
            Topology::ClientServer => (1, 2),
        }
    }
}

/// One group: its primary, its forwarding secondaries, the tools running in it, its
/// traffic source, and what was measured at the start.
struct Scenario {
    topo: Topology,
    group: Group,
    primary: Proc,
    forwarders: Vec<Option<Proc>>,
    /// When each killed forwarder is started again.
    back_at: Vec<Instant>,
    dumpcap: Option<(Proc, std::path::PathBuf)>,
    traffic: Option<Proc>,
    /// `proc-info --show-port --show-mempool` with every process up and no traffic yet.
    baseline: Value,
    /// How long that proc-info took: the ones struck later are killed at a moment drawn
    /// from this span, from their start-up to their last output.
    proc_info_span: Duration,
    rss_start_kib: u64,
}

impl Scenario {
    fn start(topo: Topology) -> Scenario {
        let group = Group::new(
            &format!("soak_{}", topo.primary_program()),
            &workspace_bin(topo.primary_program()),
        );
        let primary = start_primary(&group, topo);
        let mut s = Scenario {
            topo,
            group,
            primary,
            forwarders: Vec::new(),
            back_at: Vec::new(),
            dumpcap: None,
            traffic: None,
            baseline: Value::Null,
            proc_info_span: Duration::ZERO,
            rss_start_kib: 0,
        };
        s.back_at = vec![Instant::now(); topo.forwarders().1 as usize];
        s.forwarders = (0..topo.forwarders().1)
            .map(|k| Some(s.start_forwarder(k)))
            .collect();
        let t0 = Instant::now();
        s.baseline = proc_info_json(&s.group, &["--show-port", "--show-mempool"]);
        s.proc_info_span = t0.elapsed();
        s
    }

    fn start_forwarder(&self, k: u16) -> Proc {
        match self.topo {
            Topology::Symmetric => {
                let mut p = self.group.secondary(
                    &workspace_bin("symmetric_mp"),
                    "2@1",
                    &system_tests::symmetric_mp_args("1"),
                );
                p.expect("Finished Process Init", T);
                p
            }
            Topology::ClientServer => self.group.mp_client(k),
        }
    }

    /// Starts the killed forwarders whose time has come (`all`: every one), so that their
    /// queues are polled again. Says whom it started.
    fn restart_forwarders(&mut self, fates: &mut BTreeMap<App, Fates>, all: bool) -> Vec<String> {
        let mut started = Vec::new();
        for k in 0..self.forwarders.len() {
            if self.forwarders[k].is_none() && (all || Instant::now() >= self.back_at[k]) {
                let p = self.start_forwarder(k as u16);
                fates.entry(self.topo.forwarders().0).or_default().started += 1;
                started.push(format!(
                    "{} started (pid {})",
                    self.topo.forwarder_label(k as u16),
                    p.pid()
                ));
                self.forwarders[k] = Some(p);
            }
        }
        started
    }

    fn start_traffic(&mut self, pps: u64) {
        let exe = std::env::current_exe().expect("the soak's own path");
        let (rxqs, txqs) = self.topo.queues();
        let (rxqs, txqs, pps) = (rxqs.to_string(), txqs.to_string(), pps.to_string());
        let lcore = match self.topo {
            Topology::Symmetric => "6@0",
            Topology::ClientServer => "6@1",
        };
        let mut p = self.group.secondary(
            &exe.display().to_string(),
            lcore,
            &["traffic", "net_ring0", &rxqs, "net_ring1", &txqs, &pps],
        );
        p.expect("TRAFFIC ready", T);
        self.traffic = Some(p);
    }

    /// Stops the traffic source and returns its closing counts.
    fn stop_traffic(&mut self) -> TrafficCounts {
        let mut p = self.traffic.take().expect("traffic was started");
        p.send("stop");
        let line = p.expect("TRAFFIC offered", MAX_DRAIN + T);
        let status = p.finish(T);
        assert!(status.success(), "traffic source: {status}: {}", p.stderr());
        TrafficCounts::parse(&line)
    }

    fn primary_alive(&mut self) -> bool {
        self.primary.wait(Duration::ZERO).is_none()
    }
}

fn start_primary(group: &Group, topo: Topology) -> Proc {
    let (args, ready) = topo.primary_args();
    let mut p = group.start_on_rings(args);
    p.expect(ready, T);
    p
}

/// The resident memory of process `pid` in KiB (`VmRSS`), or None once it is gone.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// What a traffic source counted.
struct TrafficCounts {
    /// Every frame the source made.
    offered: u64,
    /// How long it sent them for.
    sending: Duration,
    /// Those it put on an RX ring.
    queued: u64,
    refused: u64,
    no_mbuf: u64,
    forwarded: u64,
    dup: u64,
    bad: u64,
    pool: String,
}

impl TrafficCounts {
    fn parse(line: &str) -> TrafficCounts {
        TrafficCounts {
            offered: count(line, "offered"),
            sending: Duration::from_millis(count(line, "ms")),
            queued: count(line, "queued"),
            refused: count(line, "refused"),
            no_mbuf: count(line, "no_mbuf"),
            forwarded: count(line, "forwarded"),
            dup: count(line, "dup"),
            bad: count(line, "bad"),
            pool: line
                .rsplit_once("pool=")
                .map(|(_, p)| p.to_string())
                .unwrap_or_else(|| panic!("no pool in '{line}'")),
        }
    }
}

/// Where an action may strike: a forwarder (by group and number) or a tool of a group.
#[derive(Clone, Copy)]
enum Target {
    Forwarder(usize, u16),
    Dumpcap(usize),
    ProcInfo(usize),
}

/// The whole run; true when it passed.
fn soak(opts: &Options) -> bool {
    let mut rng = Rng(opts.seed);
    let mut fates: BTreeMap<App, Fates> = BTreeMap::new();
    let mut groups = [
        Scenario::start(Topology::Symmetric),
        Scenario::start(Topology::ClientServer),
    ];
    let mut targets = Vec::new();
    for (g, s) in groups.iter().enumerate() {
        let (app, n) = s.topo.forwarders();
        fates.entry(app).or_default().started += n as u64;
        targets.extend((0..n).map(|k| Target::Forwarder(g, k)));
        targets.extend([Target::Dumpcap(g), Target::ProcInfo(g)]);
    }
    for s in &mut groups {
        s.start_traffic(opts.pps);
    }
    std::thread::sleep(WARM_UP);
    for s in &mut groups {
        s.rss_start_kib = rss_kib(s.primary.pid()).unwrap_or_default();
    }

    let began = Instant::now();
    let end = began + Duration::from_secs_f64(opts.minutes * 60.0);
    let mut progress = began + PROGRESS_EVERY;
    let mut captures = 0u64;
    let mut died = Vec::new();
    'run: while Instant::now() < end {
        let until = (Instant::now() + rng.millis(PAUSE_MS)).min(end);
        while Instant::now() < until {
            for s in &mut groups {
                if !s.primary_alive() {
                    died.push(format!(
                        "the {} primary (pid {}) died: {}",
                        s.topo.name(),
                        s.primary.pid(),
                        s.primary.stderr()
                    ));
                }
            }
            if !died.is_empty() {
                break 'run;
            }
            for s in &mut groups {
                for said in s.restart_forwarders(&mut fates, false) {
                    if opts.verbose {
                        println!("soak: {:>7.1} s {said}", began.elapsed().as_secs_f64());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if Instant::now() >= end {
            break;
        }
        let target = targets[rng.below(targets.len() as u64) as usize];
        let said = act(target, &mut groups, &mut fates, &mut rng, &mut captures);
        if opts.verbose {
            println!("soak: {:>7.1} s {said}", began.elapsed().as_secs_f64());
        }
        if Instant::now() >= progress {
            println!(
                "soak: {:.0} of {:.0} s, kills so far: {}",
                began.elapsed().as_secs_f64(),
                opts.minutes * 60.0,
                kills_line(&fates)
            );
            progress += PROGRESS_EVERY;
        }
    }
    let ran = began.elapsed();
    let mut released = Vec::new();
    for s in &mut groups {
        if let Some((mut p, file)) = s.dumpcap.take() {
            if kill(&mut p, App::Dumpcap, &mut fates) {
                released.push(format!(
                    "  the dumpcap of {} killed at the end (pid {}): {}",
                    s.topo.name(),
                    p.pid(),
                    capture_release(&s.primary, p.pid())
                ));
            }
            let _ = std::fs::remove_file(file);
        }
    }
    println!(
        "\nsoak: ran {:.0} s (seed {}); processes started and SIGKILLed at random:",
        ran.as_secs_f64(),
        opts.seed
    );
    print_fates(&fates);
    released.iter().for_each(|r| println!("{r}"));
    if !died.is_empty() {
        for d in &died {
            println!("soak: FAILED: {d}");
        }
        return false;
    }

    // The end: every forwarder running, the traffic drained.
    for s in &mut groups {
        s.restart_forwarders(&mut fates, true);
    }
    let counts: Vec<TrafficCounts> = groups.iter_mut().map(Scenario::stop_traffic).collect();
    // mp_server prints its clients' counts every second: let it print them once more.
    std::thread::sleep(Duration::from_millis(1500));
    let mut failures: Vec<String> = fates
        .iter()
        .flat_map(|(app, f)| {
            f.unexpected
                .iter()
                .map(move |u| format!("{}: {u}", app.name()))
        })
        .collect();
    for (s, c) in groups.iter_mut().zip(&counts) {
        failures.extend(report(s, c, opts));
    }

    // The primary restart: each primary killed, its secondaries gone with it, a new
    // primary taking the group over and forwarding again.
    println!("\nsoak: primary restart (SIGKILL, then a new primary of the same group):");
    for s in &mut groups {
        match restart_primary(s, opts.pps) {
            Ok(said) => println!("  {}: {said}", s.topo.name()),
            Err(e) => {
                println!("  {}: {e}", s.topo.name());
                failures.push(format!("{}: primary restart: {e}", s.topo.name()));
            }
        }
    }
    for f in &failures {
        println!("soak: FAILED: {f}");
    }
    failures.is_empty()
}

fn print_fates(fates: &BTreeMap<App, Fates>) {
    println!("  kills: {}", kills_line(fates));
    for (app, f) in fates {
        let finished = if *app == App::ProcInfo {
            format!(", {} finished before the kill", f.exited)
        } else {
            String::new()
        };
        println!(
            "  {:<12} started {:>5}, killed {:>5}{finished}",
            app.name(),
            f.started,
            f.killed
        );
    }
}

/// Strikes `target`: kills it if it runs, starts it otherwise. Says what it did.
fn act(
    target: Target,
    groups: &mut [Scenario],
    fates: &mut BTreeMap<App, Fates>,
    rng: &mut Rng,
    captures: &mut u64,
) -> String {
    match target {
        Target::Forwarder(g, k) => {
            let s = &mut groups[g];
            let app = s.topo.forwarders().0;
            let k = k as usize;
            match s.forwarders[k].take() {
                Some(mut p) => {
                    let pid = p.pid();
                    kill(&mut p, app, fates);
                    let down = rng.millis(DOWN_MS);
                    s.back_at[k] = Instant::now() + down;
                    format!(
                        "{} (pid {pid}) killed, to start again in {} ms",
                        s.topo.forwarder_label(k as u16),
                        down.as_millis()
                    )
                }
                // Killed and not yet started again: it waits for its time.
                None => format!("{} is down", s.topo.forwarder_label(k as u16)),
            }
        }
        Target::Dumpcap(g) => {
            let s = &mut groups[g];
            match s.dumpcap.take() {
                Some((mut p, file)) => {
                    let pid = p.pid();
                    kill(&mut p, App::Dumpcap, fates);
                    let _ = std::fs::remove_file(file);
                    format!("dumpcap of {} (pid {pid}) killed", s.topo.name())
                }
                None => {
                    *captures += 1;
                    let port = rng.below(2).to_string();
                    let file = std::env::temp_dir().join(format!(
                        "soak{}_{}.pcapng",
                        std::process::id(),
                        captures
                    ));
                    let path = file.display().to_string();
                    // A short snapshot: the file need not hold whole frames.
                    let p = dumpcap(
                        &s.group,
                        DUMPCAP_LCORE,
                        &["-i", &port, "-w", &path, "-s", "96"],
                    );
                    fates.entry(App::Dumpcap).or_default().started += 1;
                    let said = format!(
                        "dumpcap of {} port {port} started (pid {})",
                        s.topo.name(),
                        p.pid()
                    );
                    s.dumpcap = Some((p, file));
                    said
                }
            }
        }
        Target::ProcInfo(g) => {
            let s = &groups[g];
            let mut p = Proc::start(
                &workspace_bin("proc-info"),
                &[
                    "--file-prefix",
                    &s.group.prefix,
                    "--",
                    "--stats",
                    "--xstats",
                    "--show-port",
                    "--show-mempool",
                    "--show-ring",
                    "-m",
                    "--json",
                ],
            );
            fates.entry(App::ProcInfo).or_default().started += 1;
            let span = s.proc_info_span.as_micros() as u64;
            std::thread::sleep(Duration::from_micros(rng.below(span + 1)));
            let pid = p.pid();
            let how = if kill(&mut p, App::ProcInfo, fates) {
                "killed"
            } else {
                "had finished"
            };
            format!("proc-info of {} (pid {pid}) {how}", s.topo.name())
        }
    }
}

/// SIGKILLs `p` unless it already exited, which only proc-info may do (successfully).
/// Says whether it killed it.
fn kill(p: &mut Proc, app: App, fates: &mut BTreeMap<App, Fates>) -> bool {
    let f = fates.entry(app).or_default();
    match p.wait(Duration::ZERO) {
        None => {
            p.kill();
            f.killed += 1;
            true
        }
        Some(status) => {
            f.exited += 1;
            if app != App::ProcInfo || !status.success() {
                let err = p.stderr();
                let last = err.lines().last().unwrap_or_default();
                f.unexpected.push(format!(
                    "process {} exited by itself ({status}): {last}",
                    p.pid()
                ));
            }
            false
        }
    }
}

fn kills_line(fates: &BTreeMap<App, Fates>) -> String {
    let each: Vec<String> = fates
        .iter()
        .map(|(app, f)| format!("{} {}", app.name(), f.killed))
        .collect();
    each.join(", ")
}

fn stat(all: &Value, port: usize, key: &str) -> u64 {
    all["ports"][port]["stats"][key]
        .as_u64()
        .unwrap_or_default()
}

/// The mbufs each pool of `all` has in use, by name.
fn pools_in_use(all: &Value) -> BTreeMap<String, u64> {
    all["mempools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["in_use"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// The mbufs the queues of `all`'s ports hold, RX and TX.
fn queue_mbufs(all: &Value) -> (u64, u64) {
    let sum = |key: &str| -> u64 {
        let ports = all["ports"].as_array().into_iter().flatten();
        let queues = ports.flat_map(|p| p["settings"][key].as_array().into_iter().flatten());
        queues.map(|n| n.as_u64().unwrap_or_default()).sum()
    };
    (sum("rx_queue_mbufs"), sum("tx_queue_mbufs"))
}

/// What `primary` said of the capture of dumpcap `pid` once it saw it die, as its log line.
fn capture_release(primary: &Proc, pid: i32) -> String {
    let said = [
        format!("removed the capture of exited process {pid} "),
        format!("did not leave the capture of exited process {pid}:"),
    ];
    let deadline = Instant::now() + T;
    loop {
        let err = primary.stderr();
        if let Some(line) = err.lines().find(|l| said.iter().any(|s| l.contains(s))) {
            return format!("the primary logged \"{}\"", line.trim());
        }
        if Instant::now() > deadline {
            return format!("the primary logged nothing of its capture within {T:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rings between the ports (theirs, mp_server's client rings) that hold frames or
/// claims, as `name count (claims: enqueue E, dequeue D)`.
fn busy_frame_rings(all: &Value) -> Vec<String> {
    let n = |r: &Value, k: &str| r[k].as_u64().unwrap_or_default();
    rings_named(all, FRAME_RINGS)
        .filter(|r| n(r, "count") + n(r, "enqueue_claims") + n(r, "dequeue_claims") > 0)
        .map(|r| {
            format!(
                "{} {} (claims: enqueue {}, dequeue {})",
                r["name"].as_str().unwrap_or_default(),
                n(r, "count"),
                n(r, "enqueue_claims"),
                n(r, "dequeue_claims")
            )
        })
        .collect()
}

/// The rings of `all` (proc-info's JSON) whose names start with one of `prefixes`.
fn rings_named<'a>(all: &'a Value, prefixes: &'a [&str]) -> impl Iterator<Item = &'a Value> {
    all["rings"].as_array().into_iter().flatten().filter(|r| {
        r["name"]
            .as_str()
            .is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p)))
    })
}

/// The frames the rings of `all` whose names start with one of `prefixes` hold.
fn frames_in_rings(all: &Value, prefixes: &[&str]) -> u64 {
    rings_named(all, prefixes)
        .map(|r| r["count"].as_u64().unwrap_or_default())
        .sum()
}

/// Prints where group `s`'s frames and mbufs went; returns what fails the run.
fn report(s: &mut Scenario, c: &TrafficCounts, opts: &Options) -> Vec<String> {
    let name = s.topo.name();
    let mut failures = Vec::new();
    let all = proc_info_json(
        &s.group,
        &[
            "--stats",
            "--xstats",
            "--show-port",
            "--show-mempool",
            "--show-ring",
        ],
    );
    let rss_end = rss_kib(s.primary.pid()).unwrap_or_default();
    let before = pools_in_use(&s.baseline);
    let after = pools_in_use(&all);
    let source_growth = after.get(&c.pool).copied().unwrap_or_default();
    let received = stat(&all, 0, "ipackets");
    let sent = stat(&all, 1, "opackets");
    let in_forwarders = received.saturating_sub(sent);
    println!(
        "\n{name} group (prefix {}, primary pid {}):",
        s.group.prefix,
        s.primary.pid()
    );
    println!(
        "  frames: offered {} ({:.0}/s for {:.0} s), forwarded {}, lost {}; where the lost ones went:",
        c.offered,
        c.offered as f64 / c.sending.as_secs_f64().max(0.001),
        c.sending.as_secs_f64(),
        c.forwarded,
        c.offered.saturating_sub(c.forwarded)
    );
    println!("    not sent, the source's pool empty: {}", c.no_mbuf);
    println!(
        "    dropped at port 0's input, its RX ring full (no process polling the queue): {}",
        c.refused
    );
    println!(
        "    left in port 0's RX rings: {}",
        c.queued.saturating_sub(received)
    );
    println!(
        "    received by port 0 ({received}), not sent by port 1 ({sent}): {in_forwarders}, of which"
    );
    // The source's mbufs in use that no ring holds are in no one's hands but a dead
    // process's; with mp_server's counts, the rest of the forwarders' losses were freed.
    let in_hands = source_growth.saturating_sub(frames_in_rings(&all, FRAME_RINGS));
    let mut accounted = in_hands;
    if s.topo == Topology::ClientServer {
        let out = s.primary.stdout().join("\n");
        let (mut dropped, mut drained) = (0, 0);
        for client in 0..2 {
            dropped += client_stat(&out, client, "rx_drop");
            drained += client_stat(&out, client, "drained");
        }
        let in_rings = frames_in_rings(&all, &["MProc_Client"]);
        println!("      dropped by mp_server, the client not running: {dropped}");
        println!("      taken back by mp_server from dead clients' rings and hands: {drained}");
        println!("      left in the clients' rings: {in_rings}");
        accounted += dropped + drained + in_rings;
    }
    println!(
        "      still in use at the end in no ring (the source pool's in-use count less what the rings hold: lost in the hands of killed processes): {in_hands}"
    );
    println!(
        "      freed unsent (a full TX queue's refusal, or a killed forwarder's burst given back by its repair): {}",
        in_forwarders.saturating_sub(accounted)
    );
    println!(
        "    sent by port 1, not taken from its TX rings (or damaged, or twice): {}",
        sent.saturating_sub(c.forwarded)
    );
    for (p, port) in all["ports"].as_array().into_iter().flatten().enumerate() {
        let drops: Vec<String> = ["imissed", "rx_nombuf", "oerrors"]
            .iter()
            .map(|k| format!("{k} {}", stat(&all, p, k)))
            .collect();
        let xdrops: Vec<String> = port["xstats"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| {
                (k.contains("drop") || k.contains("error") || k.contains("miss"))
                    && v.as_u64().unwrap_or_default() > 0
            })
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "    port {p} drop counters: {}; drop xstats above 0: {}",
            drops.join(", "),
            if xdrops.is_empty() {
                "none".into()
            } else {
                xdrops.join(", ")
            }
        );
    }
    if c.dup > 0 || c.bad > 0 {
        failures.push(format!(
            "{name}: {} frames came back twice and {} damaged",
            c.dup, c.bad
        ));
    }

    let (rx_held, tx_held) = queue_mbufs(&all);
    let (rx_base, tx_base) = queue_mbufs(&s.baseline);
    println!("  mbufs in use per pool, baseline (every process up, no traffic) -> end (traffic drained):");
    for (pool, end) in &after {
        let base = before.get(pool).copied().unwrap_or_default();
        let whose = if *pool == c.pool {
            " (the traffic source's, which every frame came from)"
        } else {
            ""
        };
        let over = end.saturating_sub(base);
        println!(
            "    {pool}{whose}: {base} -> {end}{}",
            if over > 0 {
                format!(" (+{over})")
            } else {
                String::new()
            }
        );
        if over > 0 {
            failures.push(format!(
                "{name}: pool {pool} has {over} mbufs in use above its baseline of {base}"
            ));
        }
    }
    println!("    held by the ports' queues: RX {rx_base} -> {rx_held}, TX {tx_base} -> {tx_held}");
    let rings = busy_frame_rings(&all);
    println!(
        "    rings between the ports holding frames or claims: {}",
        if rings.is_empty() {
            "none".to_string()
        } else {
            rings.join(", ")
        }
    );
    let err = s.primary.stderr();
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        .collect();
    println!(
        "  the primary logged {} warnings and errors",
        warnings.len()
    );
    // The last few, and every earlier one about a capture (a capture left allocated fails
    // the run through its pool, and its line says why).
    let last = warnings.len().saturating_sub(LAST_WARNINGS);
    let earlier = warnings[..last].iter().filter(|w| w.contains("capture"));
    for w in earlier.chain(&warnings[last..]) {
        println!("    {w}");
    }
    let growth = rss_end.saturating_sub(s.rss_start_kib);
    println!(
        "  primary memory (VmRSS): {} KiB after {} s of traffic -> {rss_end} KiB at the end (+{growth} KiB; bound {} KiB)",
        s.rss_start_kib,
        WARM_UP.as_secs(),
        opts.max_rss_growth_kib
    );
    if growth > opts.max_rss_growth_kib {
        failures.push(format!(
            "{name}: the primary's memory grew by {growth} KiB, more than {} KiB",
            opts.max_rss_growth_kib
        ));
    }
    failures
}

/// Kills `s`'s primary, waits for its secondaries to leave, starts a new primary of the
/// same group, which must reclaim the old memory and forward again; then stops everything.
fn restart_primary(s: &mut Scenario, pps: u64) -> Result<String, String> {
    let old = s.primary.pid();
    s.primary.kill();
    let mut lingering = Vec::new();
    for p in s.forwarders.iter_mut().flatten() {
        if p.wait(SECONDARY_EXIT).is_none() {
            lingering.push(p.pid());
            p.kill();
        }
    }
    s.forwarders.iter_mut().for_each(|f| *f = None);
    if !lingering.is_empty() {
        return Err(format!(
            "secondaries {lingering:?} still ran {SECONDARY_EXIT:?} after their primary {old} died"
        ));
    }
    s.primary = start_primary(&s.group, s.topo);
    let deadline = Instant::now() + T;
    while !s.primary.stderr().contains("reclaimed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = s.primary.stderr();
    let Some(reclaimed) = err.lines().find(|l| l.contains("reclaimed")) else {
        return Err(format!(
            "the new primary did not reclaim the dead one's memory: {err}"
        ));
    };
    let mut fates = BTreeMap::new();
    s.restart_forwarders(&mut fates, true);
    s.start_traffic(pps);
    std::thread::sleep(Duration::from_secs(1));
    let c = s.stop_traffic();
    for p in s.forwarders.iter_mut().flatten() {
        p.stop_ok();
    }
    s.primary.stop_ok();
    let said = format!(
        "new primary pid {}: \"{}\"; then {} of {} frames forwarded",
        s.primary.pid(),
        reclaimed.trim(),
        c.forwarded,
        c.offered
    );
    if c.forwarded != c.offered || c.offered == 0 {
        return Err(said);
    }
    Ok(said)
}

/// Ends the traffic source with `msg`; the primary frees what it held in the group.
fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("soak traffic: {msg}");
    std::process::exit(2);
}

/// The traffic source (see the module's documentation), a secondary of the group.
fn traffic(args: &[String]) {
    let (eal, app) = eal::init_or_exit(args);
    drivers::register_all();
    if let Err(e) = net::init() {
        fail(e);
    }
    let arg = |i: usize, what: &str| -> u64 {
        app.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| fail(format!("argument {i} ({what}) missing or bad")))
    };
    let (port_in, rxqs) = (&app[2], arg(3, "RX queues") as u16);
    let (port_out, txqs) = (
        app.get(4).cloned().unwrap_or_default(),
        arg(5, "TX queues") as u16,
    );
    let pps = arg(6, "frames per second");
    // Frames go into the RX rings by address (a ring holds what is put in it), and come
    // out of the TX rings as owned mbufs, held before the ring lets them go.
    let rx_rings: Vec<eal::ring::Ring> = (0..rxqs)
        .map(|q| {
            eal::ring::Ring::lookup(&drivers::ring::ring_name(port_in, "rx", q))
                .unwrap_or_else(|e| fail(e))
        })
        .collect();
    let tx_rings: Vec<MbufRing> = (0..txqs)
        .map(|q| {
            MbufRing::lookup(&drivers::ring::ring_name(&port_out, "tx", q))
                .unwrap_or_else(|e| fail(e))
        })
        .collect();
    let pool = net::PktmbufPool::create(
        &format!("soak_src{}", std::process::id()),
        SOURCE_POOL,
        0,
        128,
        2048,
    )
    .unwrap_or_else(|e| fail(e));
    let stop = Arc::new(AtomicBool::new(false));
    let told = stop.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.map_or(true, |l| l.trim() == "stop") {
                break;
            }
        }
        told.store(true, Ordering::Relaxed);
    });
    println!("TRAFFIC ready pool={}", pool.name());

    let (mut queued, mut refused, mut no_mbuf) = (0u64, 0u64, 0u64);
    let (mut forwarded, mut dup, mut bad) = (0u64, 0u64, 0u64);
    // One bit per frame index: seen coming back.
    let mut seen: Vec<u64> = Vec::new();
    let mut next = 0u32;
    let start = Instant::now();
    let mut stopped_at: Option<Instant> = None;
    let mut last_back = Instant::now();
    loop {
        let mut busy = false;
        if stop.load(Ordering::Relaxed) {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            let quiet = at.elapsed() >= QUIET && last_back.elapsed() >= QUIET;
            if quiet || at.elapsed() >= MAX_DRAIN {
                break;
            }
        } else {
            // Frame i is due i/pps seconds after the start.
            // At most a burst a turn, so that a source slower than the rate asked for
            // still takes what comes back and hears `stop`.
            let due = (start.elapsed().as_nanos() * pps as u128 / 1_000_000_000) as u64;
            let due = due.min(next as u64 + BURST);
            while (next as u64) < due {
                let frame = build_frame(next);
                next += 1;
                busy = true;
                let Some(mut m) = pool.alloc() else {
                    no_mbuf += 1;
                    continue;
                };
                let data = m
                    .append(frame.len() as u16)
                    .unwrap_or_else(|| fail("a frame larger than an mbuf"));
                data.copy_from_slice(&frame);
                let q = if rxqs > 1 {
                    let (h, q) = rss_queue(&frame, rxqs);
                    m.set_rss_hash(h);
                    q
                } else {
                    0
                };
                // This process is the only producer of the RX rings: a ring with room
                // now still has it at the enqueue.
                if rx_rings[q].free_count() == 0 {
                    refused += 1;
                    continue;
                }
                if rx_rings[q].enqueue_one(m.into_addr()) {
                    queued += 1;
                } else {
                    fail(format!(
                        "RX ring {q} of {port_in} refused a frame it had room for"
                    ));
                }
            }
        }
        for r in &tx_rings {
            let k = r.dequeue_burst(MAX_BURST, |m| {
                match check_frame(&m.to_vec()).filter(|i| *i < next) {
                    Some(i) => {
                        let (word, bit) = (i as usize / 64, 1u64 << (i % 64));
                        if seen.len() <= word {
                            seen.resize(word + 1, 0);
                        }
                        if seen[word] & bit != 0 {
                            dup += 1;
                        } else {
                            seen[word] |= bit;
                            forwarded += 1;
                        }
                    }
                    None => bad += 1,
                }
            });
            if k > 0 {
                busy = true;
                last_back = Instant::now();
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let sending_ms = stopped_at.map_or(0, |at| at.duration_since(start).as_millis());
    println!(
        "TRAFFIC offered={next} ms={sending_ms} queued={queued} refused={refused} no_mbuf={no_mbuf} forwarded={forwarded} dup={dup} bad={bad} pool={}",
        pool.name()
    );
    eal.cleanup();
}
