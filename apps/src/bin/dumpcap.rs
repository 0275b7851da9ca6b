//! dumpcap: captures the frames a running group receives and sends on a port into a
//! pcapng (or pcap) file, as DPDK's `dpdk-dumpcap`, while the group keeps forwarding.
//!
//! ```text
//! dumpcap [--file-prefix=PREFIX] -i PORT -w FILE [-c COUNT] [-a duration:SECS] [-s SNAPLEN] [-P]
//! dumpcap [EAL options] -- -i PORT -w FILE ...
//! dumpcap [--file-prefix=PREFIX] -D
//! ```
//! It joins the group as a secondary on lcore 126 (proc-info takes 127), hooks a copy into
//! every RX and TX queue of the port (see `net::capture`), and writes the copies until it
//! has COUNT frames, the duration is over, or it is interrupted. The pollers pay one
//! copy per frame while it runs and nothing once it has stopped.

use apps::{die, install_stop_signals, stop_requested};
use clap::Parser;
use net::capture::{Capture, CapturedFrame, Direction, FrameInfo, MAX_SNAPLEN};
use net::Port;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, TsResolution};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOOL_LCORE: u32 = 126;
/// How long to sleep when no copy waits: short enough that the ring (2,048 copies) does not
/// fill at a few Mpps, long enough not to take a CPU from the pollers.
const IDLE_SLEEP: Duration = Duration::from_micros(200);

#[derive(Parser, Debug)]
#[command(
    name = "dumpcap",
    about = "Capture the frames of a running group's port into a pcapng or pcap file"
)]
struct Args {
    /// A port to capture: its id or its name (repeat for several ports)
    #[arg(short = 'i', long = "interface")]
    interfaces: Vec<String>,
    /// The file to write
    #[arg(short = 'w')]
    file: Option<String>,
    /// Stop after this many frames
    #[arg(short = 'c')]
    count: Option<u64>,
    /// Stop after a while: duration:SECONDS
    #[arg(short = 'a', long = "autostop", value_parser = parse_autostop)]
    autostop: Option<Duration>,
    /// Bytes kept of each frame (longer frames are cut; the file records their length)
    #[arg(short = 's', long = "snapshot-length", default_value_t = MAX_SNAPLEN)]
    snaplen: u32,
    /// Write classic pcap instead of pcapng
    #[arg(short = 'P', long = "pcap")]
    pcap: bool,
    /// List the group's ports and exit
    #[arg(short = 'D', long = "list-interfaces")]
    list: bool,
    /// Print nothing but errors
    #[arg(short = 'q')]
    quiet: bool,
}

fn parse_autostop(s: &str) -> Result<Duration, String> {
    let secs = s
        .strip_prefix("duration:")
        .ok_or_else(|| format!("-a '{s}': only duration:SECONDS is known"))?;
    secs.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("-a '{s}': SECONDS must be a positive number"))
}

/// dpdk-dumpcap takes no `--`: its EAL options are `--file-prefix` and `--log-level` among
/// its own. Both forms are accepted: without `--`, those two go to the EAL.
fn split_args(args: Vec<String>) -> Vec<String> {
    if args.iter().any(|a| a == "--") {
        return args;
    }
    let mut eal = vec![args[0].clone()];
    let mut app = vec!["--".to_string()];
    let mut it = args.into_iter().skip(1);
    while let Some(a) = it.next() {
        let takes_value = a == "--file-prefix" || a == "--log-level";
        if a.starts_with("--file-prefix") || a.starts_with("--log-level") {
            eal.push(a);
            if takes_value {
                eal.extend(it.next());
            }
        } else {
            app.push(a);
        }
    }
    eal.extend(app);
    eal
}

/// The output file, in either format.
enum Output {
    PcapNg(PcapNgWriter<BufWriter<File>>),
    /// The pcap writer cannot lend its writer back for a flush; it writes through a
    /// handle to the buffer instead.
    Pcap(PcapWriter<SharedFile>, SharedFile),
}

#[derive(Clone)]
struct SharedFile(Rc<RefCell<BufWriter<File>>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl Output {
    fn create(path: &str, pcap: bool, captures: &[Capture]) -> Result<Output, String> {
        let snaplen = captures
            .iter()
            .map(Capture::snaplen)
            .max()
            .unwrap_or(MAX_SNAPLEN);
        let file = File::create(path).map_err(|e| format!("cannot create '{path}': {e}"))?;
        let w = BufWriter::new(file);
        let err = |e: pcap_file::PcapError| format!("cannot write '{path}': {e}");
        if pcap {
            let header = PcapHeader {
                snaplen,
                datalink: DataLink::ETHERNET,
                ts_resolution: TsResolution::NanoSecond,
                ..PcapHeader::default()
            };
            let shared = SharedFile(Rc::new(RefCell::new(w)));
            let pw = PcapWriter::with_header(shared.clone(), header).map_err(err)?;
            return Ok(Output::Pcap(pw, shared));
        }
        // One interface per capture, numbered in the order of the -i options.
        let mut ng = PcapNgWriter::new(w).map_err(err)?;
        for c in captures {
            let port = c.port();
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: c.snaplen(),
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(port.name())),
                    InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                        "port {} ({})",
                        port.id(),
                        port.driver_name()
                    ))),
                    InterfaceDescriptionOption::IfMacAddr(Cow::Owned(port.mac().0.to_vec())),
                    // The crate writes timestamps in nanoseconds; say so (the default is µs).
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            ng.write_pcapng_block(idb).map_err(err)?;
        }
        Ok(Output::PcapNg(ng))
    }

    fn write(
        &mut self,
        interface: usize,
        f: &CapturedFrame,
        ts: Duration,
    ) -> Result<(), pcap_file::PcapError> {
        let info: FrameInfo = f.info();
        match self {
            Output::Pcap(w, _) => w
                .write_packet(&PcapPacket::new(ts, info.orig_len, f.data()))
                .map(drop),
            Output::PcapNg(w) => {
                // epb_flags bits 0-1: 1 inbound, 2 outbound.
                let flags = match info.direction {
                    Direction::Rx => 1,
                    Direction::Tx => 2,
                };
                let epb = EnhancedPacketBlock {
                    interface_id: interface as u32,
                    timestamp: ts,
                    original_len: info.orig_len,
                    data: Cow::Borrowed(f.data()),
                    options: vec![EnhancedPacketOption::Flags(flags)],
                };
                w.write_pcapng_block(epb).map(drop)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Pcap(_, file) => file.flush(),
            Output::PcapNg(w) => w.get_mut().flush(),
        }
    }
}

/// Turns TSC readings into wall-clock time, from one reading of each taken together.
struct Clock {
    tsc0: u64,
    wall0: Duration,
    hz: f64,
}

impl Clock {
    fn new(hz: u64) -> Clock {
        Clock {
            tsc0: eal::timer::rdtsc(),
            wall0: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            hz: hz.max(1) as f64,
        }
    }
    fn wall(&self, tsc: u64) -> Duration {
        let delta = (tsc as i128 - self.tsc0 as i128) as f64 / self.hz;
        if delta >= 0.0 {
            self.wall0 + Duration::from_secs_f64(delta)
        } else {
            self.wall0.saturating_sub(Duration::from_secs_f64(-delta))
        }
    }
}

fn find_port(name: &str) -> Result<Port, String> {
    let by_id = name.parse::<u16>().ok().and_then(|id| Port::by_id(id).ok());
    by_id.or_else(|| Port::by_name(name).ok()).ok_or_else(|| {
        let have: Vec<String> = net::ethdev::ports()
            .iter()
            .map(|p| format!("{} ({})", p.id(), p.name()))
            .collect();
        format!(
            "no port '{name}' in this group; its ports are: {} (dumpcap -D lists them)",
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        )
    })
}

fn main() {
    let args = apps::tool_eal_args(split_args(std::env::args().collect()), TOOL_LCORE, "0");
    let (eal, app) = apps::init(&args);
    let args: Args = apps::parse_app_args(eal, &app);
    if args.list {
        for p in net::ethdev::ports() {
            println!(
                "{}. {} ({}, {})",
                p.id(),
                p.name(),
                p.driver_name(),
                p.state().as_str()
            );
        }
        eal.cleanup();
        return;
    }
    if args.interfaces.is_empty() {
        die(
            eal,
            "give the port to capture with -i PORT (dumpcap -D lists them)",
        )
    }
    let Some(path) = &args.file else {
        die(eal, "give the file to write with -w FILE")
    };
    let mut ports: Vec<Port> = Vec::new();
    for i in &args.interfaces {
        let p = find_port(i).unwrap_or_else(|e| die(eal, e));
        if ports.iter().all(|q| q.id() != p.id()) {
            ports.push(p);
        }
    }
    install_stop_signals();
    let captures: Vec<Capture> = ports
        .iter()
        .map(|p| {
            Capture::start(p, &[Direction::Rx, Direction::Tx], args.snaplen)
                .unwrap_or_else(|e| die(eal, e))
        })
        .collect();
    let mut out = Output::create(path, args.pcap, &captures).unwrap_or_else(|e| die(eal, e));
    let clock = Clock::new(eal.tsc_hz());
    if !args.quiet {
        let names: Vec<String> = ports.iter().map(|p| format!("'{}'", p.name())).collect();
        eprintln!("Capturing on {} into {path}", names.join(", "));
    }
    let deadline = args.autostop.map(|d| Instant::now() + d);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut captured = vec![0u64; captures.len()];
    let mut total = 0u64;
    let mut failed = None;
    let mut frames = Vec::with_capacity(32);
    'capture: while total < limit && !stop_requested() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut idle = true;
        for (i, c) in captures.iter().enumerate() {
            c.recv(&mut frames, 32);
            for f in frames.drain(..) {
                idle = false;
                if total == limit {
                    break 'capture;
                }
                if let Err(e) = out.write(i, &f, clock.wall(f.info().tsc)) {
                    failed = Some(e.to_string());
                    break 'capture;
                }
                captured[i] += 1;
                total += 1;
            }
        }
        if idle {
            // Flushed whenever idle, so a file cut short (the primary died) stays readable.
            if let Err(e) = out.flush() {
                failed = Some(e.to_string());
                break;
            }
            std::thread::sleep(IDLE_SLEEP);
        }
    }
    drop(frames);
    let dropped: Vec<u64> = captures.iter().map(Capture::dropped).collect();
    drop(captures);
    if let Err(e) = out.flush() {
        failed.get_or_insert(e.to_string());
    }
    if let Some(e) = failed {
        die(eal, format!("cannot write '{path}': {e}"));
    }
    if !args.quiet {
        eprintln!("Packets captured: {total}");
        for ((p, c), d) in ports.iter().zip(&captured).zip(&dropped) {
            eprintln!(
                "Packets received/dropped on interface '{}': {}/{d}",
                p.name(),
                c + d
            );
        }
    }
    eal.cleanup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn eal_options_without_double_dash_go_to_the_eal() {
        assert_eq!(
            split_args(v(&[
                "d",
                "--file-prefix",
                "g1",
                "-i",
                "0",
                "--log-level=7",
                "-c",
                "5"
            ])),
            v(&[
                "d",
                "--file-prefix",
                "g1",
                "--log-level=7",
                "--",
                "-i",
                "0",
                "-c",
                "5"
            ])
        );
        let with = v(&["d", "--file-prefix=g1", "--", "-i", "0"]);
        assert_eq!(split_args(with.clone()), with);
    }

    #[test]
    fn autostop_takes_a_duration_only() {
        assert_eq!(parse_autostop("duration:2"), Ok(Duration::from_secs(2)));
        assert!(parse_autostop("packets:5").is_err());
        assert!(parse_autostop("duration:-1").is_err());
        assert!(parse_autostop("duration:x").is_err());
    }
}
