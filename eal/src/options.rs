//! EAL command-line options, with DPDK's names and meanings.
//!
//! An application's command line is `prog [EAL options] -- [application options]`;
//! [`parse`] takes the EAL part and hands back the rest untouched.

use crate::lcore::{parse_corelist, parse_coremask, parse_lcores_map, LcoreLayout};
use clap::{Parser, ValueEnum};
use log::LevelFilter;
use std::fmt;
use std::path::PathBuf;

/// Memory mapped by a primary when neither `-m` nor `--socket-mem` is given.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// The hugepage range starts here unless `--base-virtaddr` says otherwise: far below
/// where Linux places shared libraries and stacks, far above a PIE's heap.
pub const DEFAULT_BASE_VIRTADDR: u64 = 0x1_0000_0000;

/// `--iova-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IovaModeArg {
    /// IOVA = physical address (no IOMMU, or `--iova-mode=pa`).
    Pa,
    /// IOVA = virtual address (an IOMMU maps the memory).
    Va,
}

/// `--proc-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProcType {
    /// This process owns the memory and the devices.
    Primary,
    /// This process joins a running primary's group.
    Secondary,
    /// Primary if no primary of the prefix runs, else secondary.
    Auto,
}

/// How much memory the primary maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryRequest {
    /// `-m MB`, from any NUMA node.
    Total(u64),
    /// `--socket-mem MB,MB,...`: MiB per NUMA node, in node order.
    PerSocket(Vec<u64>),
}

impl MemoryRequest {
    /// MiB asked for in all.
    pub fn total_mib(&self) -> u64 {
        match self {
            MemoryRequest::Total(m) => *m,
            MemoryRequest::PerSocket(v) => v.iter().sum(),
        }
    }
}

/// A PCI address `DDDD:BB:DD.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (0 to 31).
    pub device: u8,
    /// Function number (0 to 7).
    pub function: u8,
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl std::str::FromStr for PciAddr {
    type Err = String;

    /// Accepts `DDDD:BB:DD.F` and the short `BB:DD.F` (domain 0), as DPDK does.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{s}' is not a PCI address: expected DDDD:BB:DD.F or BB:DD.F, e.g. 0000:00:02.0"
            )
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, devfn) = match parts.as_slice() {
            [d, b, df] => (*d, *b, *df),
            [b, df] => ("0", *b, *df),
            _ => return Err(bad()),
        };
        let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
        let hex = |v: &str, max: u32| {
            u32::from_str_radix(v, 16)
                .ok()
                .filter(|n| *n <= max && !v.is_empty())
                .ok_or_else(bad)
        };
        Ok(PciAddr {
            domain: hex(domain, 0xffff)? as u16,
            bus: hex(bus, 0xff)? as u8,
            device: hex(dev, 0x1f)? as u8,
            function: hex(func, 7)? as u8,
        })
    }
}

/// `-a ADDR[,key=value...]`: a device allowed, with its device arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedDevice {
    /// The device.
    pub addr: PciAddr,
    /// Its `key=value` arguments, in order.
    pub devargs: Vec<(String, String)>,
}

/// `--vdev name[,key=value...]`: a virtual device to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdevSpec {
    /// The device's name, which starts with its driver's (`net_ring0`).
    pub name: String,
    /// Its `key=value` arguments, in order.
    pub args: Vec<(String, String)>,
}

fn parse_kv_list(s: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("'{kv}' in {what} is not key=value")),
        })
        .collect()
}

fn parse_allow(s: &str) -> Result<AllowedDevice, String> {
    let (addr, rest) = s.split_once(',').unwrap_or((s, ""));
    Ok(AllowedDevice {
        addr: addr.parse()?,
        devargs: parse_kv_list(rest, "the device arguments")?,
    })
}

/// A device as a hotplug request names it: a PCI address as `-a` takes it
/// (`0000:00:03.0,key=value`) or a virtual device as `--vdev` does (`net_ring2`).
pub fn parse_devargs(s: &str) -> Result<VdevSpec, String> {
    match parse_allow(s) {
        Ok(a) => Ok(VdevSpec {
            name: a.addr.to_string(),
            args: a.devargs,
        }),
        Err(_) => parse_vdev(s),
    }
}

fn parse_vdev(s: &str) -> Result<VdevSpec, String> {
    let (name, rest) = s.split_once(',').unwrap_or((s, ""));
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "'{name}' is not a virtual device name: use letters, digits and '_', e.g. net_ring0"
        ));
    }
    Ok(VdevSpec {
        name: name.to_string(),
        args: parse_kv_list(rest, "the vdev arguments")?,
    })
}

fn parse_hex_addr(s: &str) -> Result<u64, String> {
    let digits = s.trim_start_matches("0x").trim_start_matches("0X");
    let v = u64::from_str_radix(digits, 16)
        .map_err(|_| format!("'{s}' is not a hexadecimal address, e.g. 0x100000000"))?;
    if v == 0 || v % (1 << 21) != 0 || v >= 0x7f00_0000_0000 {
        return Err(format!(
            "--base-virtaddr {s} must be a non-zero multiple of 2 MiB below 0x7f0000000000"
        ));
    }
    Ok(v)
}

/// `--socket-mem` values (a newtype: clap gives a bare `Vec` a meaning of its own).
#[derive(Debug, Clone)]
struct SocketMem(Vec<u64>);

fn parse_socket_mem(s: &str) -> Result<SocketMem, String> {
    let v: Result<Vec<u64>, _> = s.split(',').map(|x| x.trim().parse::<u64>()).collect();
    match v {
        Ok(v) if !v.is_empty() && v.iter().sum::<u64>() > 0 => Ok(SocketMem(v)),
        _ => Err(format!(
            "--socket-mem '{s}' must be MiB per NUMA node separated by commas, e.g. 512,0"
        )),
    }
}

/// Validates `--file-prefix`: it becomes part of file names, so it must be a name, not a path.
pub fn validate_prefix(p: &str) -> Result<String, String> {
    let ok_chars = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if p.is_empty() || p.len() > 64 || !ok_chars || p.starts_with('.') {
        return Err(format!(
            "--file-prefix '{p}' must be 1-64 letters, digits, '_', '-' or '.', not starting with '.'"
        ));
    }
    Ok(p.to_string())
}

#[derive(Parser, Debug)]
#[command(
    about = "EAL options (DPDK names). Application options follow a '--'.",
    disable_version_flag = true,
    args_override_self = true,
    next_line_help = false
)]
struct RawArgs {
    /// List of lcores to run on, e.g. 0-3,5 (lcore n on CPU n)
    #[arg(short = 'l', value_name = "CORELIST", conflicts_with_all = ["coremask", "lcores"])]
    corelist: Option<String>,
    /// Hexadecimal bitmask of lcores to run on, e.g. 0x3
    #[arg(short = 'c', value_name = "COREMASK", conflicts_with = "lcores")]
    coremask: Option<String>,
    /// lcore to CPU map: lcore_set[@cpu_set],... e.g. '(0-3)@(0,1),4@2'
    #[arg(long = "lcores", value_name = "MAP")]
    lcores: Option<String>,
    /// lcore that runs main(); default: the lowest lcore
    #[arg(long = "main-lcore", value_name = "ID")]
    main_lcore: Option<u32>,
    /// Memory to map, in MiB (primary only)
    #[arg(short = 'm', value_name = "MB", conflicts_with = "socket_mem")]
    memory: Option<u64>,
    /// Memory per NUMA node in MiB, e.g. 512,0 (primary only)
    #[arg(long = "socket-mem", value_name = "MB,MB", value_parser = parse_socket_mem)]
    socket_mem: Option<SocketMem>,
    /// Process type in a multi-process group (DPDK's default: primary)
    #[arg(
        long = "proc-type",
        value_enum,
        default_value = "primary",
        value_name = "TYPE"
    )]
    proc_type: ProcType,
    /// Name of this group of processes (runtime dir and hugepage file names)
    #[arg(long = "file-prefix", default_value = "rpmd", value_parser = validate_prefix, value_name = "NAME")]
    file_prefix: String,
    /// hugetlbfs mount to use; default: the first mount of the default page size
    #[arg(long = "huge-dir", value_name = "DIR", conflicts_with = "no_huge")]
    huge_dir: Option<PathBuf>,
    /// Back memory with files in /dev/shm instead of hugepages (no DMA)
    #[arg(long = "no-huge", conflicts_with = "socket_mem")]
    no_huge: bool,
    /// How devices address memory: pa (physical) or va (virtual); default: va with an
    /// IOMMU or a virtio-user port, pa when physical addresses can be read, else va
    #[arg(long = "iova-mode", value_enum, value_name = "MODE")]
    iova_mode: Option<IovaModeArg>,
    /// Virtual address where shared memory starts (primary), e.g. 0x100000000
    #[arg(long = "base-virtaddr", value_parser = parse_hex_addr, value_name = "ADDR")]
    base_virtaddr: Option<u64>,
    /// PCI device to use (others are ignored), with optional ,key=value arguments
    #[arg(short = 'a', long = "allow", value_parser = parse_allow, conflicts_with = "block", value_name = "ADDR")]
    allow: Vec<AllowedDevice>,
    /// PCI device not to use
    #[arg(short = 'b', long = "block", value_name = "ADDR")]
    block: Vec<PciAddr>,
    /// Virtual device, e.g. net_ring0 or net_tap0,iface=tap0
    #[arg(long = "vdev", value_parser = parse_vdev, value_name = "NAME[,ARGS]")]
    vdev: Vec<VdevSpec>,
    /// Log level: 1-8 or error|warning|notice|info|debug (optionally PATTERN:LEVEL)
    #[arg(long = "log-level", value_parser = crate::logger::parse_level, value_name = "LEVEL")]
    log_level: Vec<LevelFilter>,
    /// Serve DPDK's telemetry socket (the default)
    #[arg(long = "telemetry", conflicts_with = "no_telemetry")]
    telemetry: bool,
    /// Serve no telemetry socket
    #[arg(long = "no-telemetry")]
    no_telemetry: bool,
}

/// The EAL options after validation.
#[derive(Debug, Clone)]
pub struct EalOptions {
    /// `-l`, `-c` or `--lcores`, with `--main-lcore`.
    pub lcores: LcoreLayout,
    /// What the user asked for; `None` means the default amount.
    pub memory: Option<MemoryRequest>,
    /// `--proc-type`.
    pub proc_type: ProcType,
    /// `--file-prefix`: the group's name.
    pub file_prefix: String,
    /// `--huge-dir`: the hugetlbfs mount to use.
    pub huge_dir: Option<PathBuf>,
    /// `--no-huge`: memory files in `/dev/shm`.
    pub no_huge: bool,
    /// `--base-virtaddr`: where the primary maps the group's memory.
    pub base_virtaddr: Option<u64>,
    /// `--iova-mode`, else chosen from what the machine has.
    pub iova_mode: Option<IovaModeArg>,
    /// `-a/--allow`: only these PCI devices are probed.
    pub allow: Vec<AllowedDevice>,
    /// `-b/--block`: these PCI devices are never probed.
    pub block: Vec<PciAddr>,
    /// `--vdev`: virtual devices the primary creates.
    pub vdevs: Vec<VdevSpec>,
    /// `--log-level`.
    pub log_level: LevelFilter,
    /// Whether this process serves DPDK's telemetry socket (`--no-telemetry`: no).
    pub telemetry: bool,
}

impl EalOptions {
    /// MiB the primary maps.
    pub fn memory_mib(&self) -> u64 {
        self.memory
            .as_ref()
            .map_or(DEFAULT_MEMORY_MIB, MemoryRequest::total_mib)
    }
}

/// The outcome of parsing a command line.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these options; `app_args` starts with the program name, then what followed `--`.
    Run {
        /// The validated EAL options.
        options: Box<EalOptions>,
        /// The program name, then the application's own arguments.
        app_args: Vec<String>,
    },
    /// `-h/--help` was given: print this and exit with success.
    Help(String),
}

/// Parses `args` (including the program name at index 0).
/// Clap's message for a refused command line, without its own leading "error: ": the
/// program prints its prefix once ("EAL: error: ", "error: ").
pub fn command_line_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let text = text.trim_end();
    text.strip_prefix("error: ").unwrap_or(text).into()
}

fn command_line_error(e: &clap::Error) -> crate::Error {
    crate::Error::CommandLine(command_line_message(e))
}

/// Parses a full command line (program name first): EAL options, then `--` and the
/// application's own. Help is [`Parsed::Help`], not an error.
///
/// ```
/// use eal::options::{parse, Parsed, ProcType};
///
/// let line = "l2fwd -l 0-1 --proc-type auto --file-prefix a -- -p 3";
/// let args: Vec<String> = line.split(' ').map(String::from).collect();
/// let Ok(Parsed::Run { options, app_args }) = parse(&args) else {
///     panic!("refused")
/// };
/// assert_eq!(options.lcores.ids(), [0, 1]);
/// assert_eq!(options.proc_type, ProcType::Auto);
/// assert_eq!(options.file_prefix, "a");
/// assert_eq!(app_args, ["l2fwd", "-p", "3"]);
///
/// // A refused option says what is wrong, without clap's own "error: ".
/// let bad: Vec<String> = ["l2fwd", "-l", "abc"].map(String::from).to_vec();
/// let err = parse(&bad).err().map(|e| e.to_string());
/// assert_eq!(err.as_deref(), Some("-l: 'abc' is not a list of numbers such as 0-3,5"));
/// ```
pub fn parse(args: &[String]) -> Result<Parsed, crate::Error> {
    let prog = args.first().cloned().unwrap_or_else(|| "app".into());
    let split = args.iter().position(|a| a == "--");
    let (eal_args, rest) = match split {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut cmd = <RawArgs as clap::CommandFactory>::command().bin_name(prog.clone());
    let matches = match cmd.try_get_matches_from_mut(eal_args) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            return Ok(Parsed::Help(e.render().to_string()))
        }
        Err(e) => return Err(command_line_error(&e)),
    };
    let raw = <RawArgs as clap::FromArgMatches>::from_arg_matches(&matches)
        .map_err(|e| command_line_error(&e))?;
    let usage = crate::Error::BadOption;

    let lcores = if let Some(list) = &raw.corelist {
        parse_corelist(list).map_err(usage)?
    } else if let Some(mask) = &raw.coremask {
        parse_coremask(mask).map_err(usage)?
    } else if let Some(map) = &raw.lcores {
        parse_lcores_map(map).map_err(usage)?
    } else {
        LcoreLayout::all_available()
    };
    let lcores = lcores
        .with_main(raw.main_lcore)
        .and_then(|l| l.check_cpus_available())
        .map_err(usage)?;

    let memory = match (raw.memory, raw.socket_mem) {
        (Some(0), _) => return Err(usage("-m must be at least 1 (MiB)".into())),
        (Some(m), _) => Some(MemoryRequest::Total(m)),
        (None, Some(v)) => Some(MemoryRequest::PerSocket(v.0)),
        (None, None) => None,
    };

    let mut app_args = vec![prog];
    app_args.extend(rest.iter().cloned());
    Ok(Parsed::Run {
        options: Box::new(EalOptions {
            lcores,
            memory,
            proc_type: raw.proc_type,
            file_prefix: raw.file_prefix,
            huge_dir: raw.huge_dir,
            no_huge: raw.no_huge,
            base_virtaddr: raw.base_virtaddr,
            iova_mode: raw.iova_mode,
            allow: raw.allow,
            block: raw.block,
            vdevs: raw.vdev,
            log_level: raw.log_level.last().copied().unwrap_or(LevelFilter::Info),
            telemetry: !raw.no_telemetry,
        }),
        app_args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        std::iter::once("prog")
            .chain(s.split_whitespace())
            .map(String::from)
            .collect()
    }

    #[test]
    fn a_refused_option_says_error_once() {
        let Err(e) = parse(&args("--bogus")) else {
            panic!("--bogus parsed")
        };
        let text = e.to_string();
        assert!(
            text.starts_with("unexpected argument '--bogus' found"),
            "{text}"
        );
        assert!(!text.contains("error:"), "{text}");
    }

    fn run(s: &str) -> (EalOptions, Vec<String>) {
        match parse(&args(s)).expect("parses") {
            Parsed::Run { options, app_args } => (*options, app_args),
            Parsed::Help(_) => panic!("help"),
        }
    }

    fn err(s: &str) -> String {
        parse(&args(s)).expect_err("must fail").to_string()
    }

    #[test]
    fn splits_app_args_at_double_dash() {
        let (o, app) = run("-l 0 --file-prefix t1 -m 64 -- -p 3 -q 1");
        assert_eq!(app, vec!["prog", "-p", "3", "-q", "1"]);
        assert_eq!(o.file_prefix, "t1");
        assert_eq!(o.memory, Some(MemoryRequest::Total(64)));
        assert_eq!(o.lcores.ids(), vec![0]);
    }

    #[test]
    fn no_double_dash_means_no_app_args() {
        let (_, app) = run("-l 0");
        assert_eq!(app, vec!["prog"]);
    }

    #[test]
    fn proc_type_and_no_huge() {
        let (o, _) = run("-l 0 --proc-type=secondary --no-huge");
        assert_eq!(o.proc_type, ProcType::Secondary);
        assert!(o.no_huge);
    }

    #[test]
    fn pci_addresses_and_vdevs() {
        let (o, _) =
            run("-l 0 -a 0000:00:02.0,rxq=2 -a 00:03.1 --vdev net_ring0 --vdev net_tap0,iface=t0");
        assert_eq!(o.allow[0].addr.to_string(), "0000:00:02.0");
        assert_eq!(o.allow[0].devargs, vec![("rxq".into(), "2".into())]);
        assert_eq!(o.allow[1].addr.to_string(), "0000:00:03.1");
        assert_eq!(o.vdevs[1].name, "net_tap0");
        assert_eq!(o.vdevs[1].args, vec![("iface".into(), "t0".into())]);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        assert!(err("-l 0 -a 0000:00:20.0").contains("PCI address"));
        assert!(err("-l 0 -a 00:02.0 -b 00:03.0").contains("cannot be used with"));
        assert!(err("-l 0 --file-prefix ../etc").contains("--file-prefix"));
        assert!(err("-l 0 --base-virtaddr 0x1234").contains("2 MiB"));
        assert!(err("-l 0 --proc-type=tertiary").contains("tertiary"));
        assert!(err("-l 0 -m 0").contains("-m"));
        assert!(err("-l 0 --socket-mem x").contains("--socket-mem"));
        assert!(err("-l 0 --no-huge --socket-mem 64").contains("cannot be used with"));
        assert!(err("-l 0 --log-level=loud").contains("log-level"));
        assert!(err("-l 0 --bogus").contains("--bogus"));
        assert!(err("-l 0 -c 1").contains("cannot be used with"));
        assert!(err("-l 0 --main-lcore 3").contains("main"));
        assert!(err("-l 0 --vdev ,x=1").contains("virtual device"));
    }

    #[test]
    fn a_repeated_option_takes_the_last_value_as_getopt_does() {
        let (o, _) = run("--file-prefix a -l 0 --file-prefix b -m 8 -m 16");
        assert_eq!(
            (o.file_prefix.as_str(), o.memory),
            ("b", Some(MemoryRequest::Total(16)))
        );
    }

    #[test]
    fn help_is_not_an_error() {
        assert!(matches!(parse(&args("-h")), Ok(Parsed::Help(h)) if h.contains("--file-prefix")));
    }
}
