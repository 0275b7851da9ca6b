//! rpmd-top: a running group at a glance, redrawn once a second in the terminal, as `top`
//! shows a machine: per port the packets and bits per second each way, drops and errors;
//! per queue the process and lcore polling it and the mbufs it holds; the mempools in use;
//! each process of the group with its lcores. Processes may come and go while it runs.
//!
//! ```text
//! rpmd-top [EAL options] [-- [-d SECS] [-n ITERATIONS]]
//! ```
//! It joins the group as a secondary (give `--file-prefix` as the primary was given it) on
//! lcore 125, free to run on any CPU, unless lcores are given; takes no queue; and ends on
//! `q`, Ctrl-C, after ITERATIONS redraws, or when the primary exits.

use apps::die;
use clap::Parser;
use net::{Direction, Port, Stats};
use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

/// The lcore rpmd-top runs on unless told otherwise (proc-info takes 127, dumpcap 126).
const TOOL_LCORE: u32 = 125;

#[derive(Parser, Debug)]
#[command(
    name = "rpmd-top",
    about = "Watch a running group: ports, queues, mempools, processes"
)]
struct Args {
    /// Seconds between redraws
    #[arg(short = 'd', long = "delay", default_value_t = 1.0)]
    delay: f64,
    /// Stop after this many redraws (default: run until q or Ctrl-C)
    #[arg(short = 'n', long = "iterations")]
    iterations: Option<u64>,
}

/// A port's counters when last drawn.
struct Sample {
    at: Instant,
    stats: Stats,
}

fn main() {
    // Unpinned, on any CPU: pinned beside busy pollers, it would wait seconds for its turn.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = format!("(0-{})", cpus - 1);
    let (eal, app) = apps::init(&apps::tool_eal_args(
        std::env::args().collect(),
        TOOL_LCORE,
        &cpus,
    ));
    let args: Args = apps::parse_app_args(eal, &app);
    if !(args.delay > 0.0 && args.delay.is_finite()) {
        die(
            eal,
            format!("-d {}: give a positive number of seconds", args.delay),
        );
    }
    apps::install_stop_signals();
    let keys = Keys::open();
    let mut last: Vec<Option<Sample>> = Vec::new();
    let mut drawn = 0u64;
    let started = Instant::now();
    while !apps::stop_requested() {
        let frame = draw(eal, &mut last, started.elapsed());
        // Home, the frame, then clear what an earlier, longer frame left below it.
        print!("\x1b[H{frame}\x1b[J");
        let _ = std::io::stdout().flush();
        drawn += 1;
        if args.iterations.is_some_and(|n| drawn >= n) {
            break;
        }
        if keys.wait_for_quit(Duration::from_secs_f64(args.delay)) {
            break;
        }
    }
    drop(keys);
    println!();
    eal.cleanup();
}

/// One screen: the group, its ports, queues, mempools and processes, `watching` after the
/// first one.
fn draw(eal: &eal::Eal, last: &mut Vec<Option<Sample>>, watching: Duration) -> String {
    let mut out = String::new();
    let procs = eal.processes();
    let primary = procs.iter().find(|p| p.primary).map_or(0, |p| p.pid);
    let _ = writeln!(
        out,
        "rpmd-top - group '{}', primary pid {primary}, {} processes, watching for {} s\x1b[K",
        eal.file_prefix(),
        procs.len(),
        watching.as_secs()
    );
    let _ = writeln!(out, "\x1b[K");
    let _ = writeln!(
        out,
        "{:<4} {:<16} {:<10} {:>12} {:>10} {:>12} {:>10} {:>12} {:>12}\x1b[K",
        "PORT", "NAME", "LINK", "RX pkt/s", "RX Mbit/s", "TX pkt/s", "TX Mbit/s", "DROPS", "ERRORS"
    );
    let ports = net::ethdev::ports();
    for p in &ports {
        let now = Sample {
            at: Instant::now(),
            stats: p.stats(),
        };
        let id = p.id() as usize;
        if last.len() <= id {
            last.resize_with(id + 1, || None);
        }
        let rates = last[id].as_ref().map(|prev| Rates::between(prev, &now));
        let link = p.link();
        let link = if link.up {
            format!("up {}G", link.speed_mbps / 1000)
        } else {
            "down".into()
        };
        let s = &now.stats;
        let cell = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
        };
        let _ = writeln!(
            out,
            "{:<4} {:<16} {:<10} {:>12} {:>10} {:>12} {:>10} {:>12} {:>12}\x1b[K",
            p.id(),
            p.name(),
            link,
            cell(rates.as_ref().map(|r| r.rx_pps), 0),
            cell(rates.as_ref().map(|r| r.rx_mbps), 1),
            cell(rates.as_ref().map(|r| r.tx_pps), 0),
            cell(rates.as_ref().map(|r| r.tx_mbps), 1),
            s.imissed + s.rx_nombuf,
            s.oerrors,
        );
        last[id] = Some(now);
    }
    let _ = writeln!(out, "\x1b[K");
    let _ = writeln!(
        out,
        "{:<4} {:<3} {:>5} {:>8} {:<16} {:>6} {:>8}\x1b[K",
        "PORT", "DIR", "QUEUE", "PID", "PROCESS", "LCORE", "MBUFS"
    );
    for p in &ports {
        queue_lines(&mut out, p, Direction::Rx, p.nb_rx_queues());
        queue_lines(&mut out, p, Direction::Tx, p.nb_tx_queues());
    }
    let _ = writeln!(out, "\x1b[K");
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>10}\x1b[K",
        "MEMPOOL", "IN USE", "CACHED", "SIZE"
    );
    for m in eal::mempool::list().unwrap_or_default() {
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10}\x1b[K",
            m.name(),
            m.in_use(),
            m.cached(),
            m.size()
        );
    }
    let _ = writeln!(out, "\x1b[K");
    let _ = writeln!(
        out,
        "{:>8} {:<10} {:<16} LCORES\x1b[K",
        "PID", "ROLE", "NAME"
    );
    for p in &procs {
        let lcores: Vec<String> = p.lcores.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "{:>8} {:<10} {:<16} {}\x1b[K",
            p.pid,
            if p.primary { "primary" } else { "secondary" },
            eal::process_name(p.pid),
            lcores.join(",")
        );
    }
    out
}

fn queue_lines(out: &mut String, p: &Port, dir: Direction, n: u16) {
    let name = if dir == Direction::Rx { "rx" } else { "tx" };
    for q in 0..n {
        let poller = p.queue_poller(dir, q);
        let (pid, process, lcore) = match poller {
            Some(w) => (
                w.pid.to_string(),
                eal::process_name(w.pid),
                w.lcore.map_or_else(|| "-".into(), |l| l.to_string()),
            ),
            None => ("-".into(), "(not polled)".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<4} {:<3} {:>5} {:>8} {:<16} {:>6} {:>8}\x1b[K",
            p.id(),
            name,
            q,
            pid,
            process,
            lcore,
            p.queue_mbufs(dir, q).unwrap_or_default()
        );
    }
}

/// A port's rates between two samples.
struct Rates {
    rx_pps: f64,
    rx_mbps: f64,
    tx_pps: f64,
    tx_mbps: f64,
}

impl Rates {
    fn between(a: &Sample, b: &Sample) -> Rates {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-6);
        // A reset in between makes a counter go down: read that as nothing since.
        let per_sec = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        Rates {
            rx_pps: per_sec(a.stats.ipackets, b.stats.ipackets),
            rx_mbps: per_sec(a.stats.ibytes, b.stats.ibytes) * 8.0 / 1e6,
            tx_pps: per_sec(a.stats.opackets, b.stats.opackets),
            tx_mbps: per_sec(a.stats.obytes, b.stats.obytes) * 8.0 / 1e6,
        }
    }
}

/// The terminal in character-at-a-time mode while rpmd-top runs, so that `q` quits without
/// Enter; left as it was on drop. On a standard input that is no terminal, nothing changes
/// and only signals and `-n` stop it.
struct Keys {
    saved: Option<libc::termios>,
}

impl Keys {
    fn open() -> Keys {
        // SAFETY: termios is plain data; tcgetattr fills it or fails on a non-terminal.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a termios we own.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return Keys { saved: None };
        }
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_cc[libc::VMIN] = 0;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        // Hide the cursor and start on a clear screen.
        print!("\x1b[?25l\x1b[2J");
        Keys { saved: Some(saved) }
    }

    /// Waits `delay`, or less if `q` is typed (then true). Never blocks in a read: input is
    /// read only when poll says some is there.
    fn wait_for_quit(&self, delay: Duration) -> bool {
        let end = Instant::now() + delay;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || apps::stop_requested() {
                return false;
            }
            let step = left.min(Duration::from_millis(100));
            if self.saved.is_none() {
                std::thread::sleep(step);
                continue;
            }
            let mut pfd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd we own, for at most `step`.
            let ready = unsafe { libc::poll(&mut pfd, 1, step.as_millis() as libc::c_int) };
            if ready > 0 {
                let mut b = [0u8; 16];
                // SAFETY: reads at most 16 bytes into a buffer of 16; poll said there is input.
                let n = unsafe { libc::read(0, b.as_mut_ptr() as *mut libc::c_void, b.len()) };
                match usize::try_from(n) {
                    Ok(n) if n > 0 => {
                        if b[..n].iter().any(|c| matches!(c, b'q' | b'Q')) {
                            return true;
                        }
                    }
                    // The terminal went away: only the delay is left to wait.
                    _ => std::thread::sleep(step),
                }
            }
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            print!("\x1b[?25h");
            // SAFETY: fd 0 and the termios read at open.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}
