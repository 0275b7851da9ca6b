//! Typed errors of the EAL. Every message says what went wrong and what to do.

use std::io;
use std::path::PathBuf;

/// Everything EAL initialisation and its objects can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line was refused by the option parser: its message, then the usage.
    #[error("{0}")]
    CommandLine(String),

    /// An EAL option's value was refused: the message names the option and why.
    #[error("{0}")]
    BadOption(String),

    /// A device argument string (`--vdev`, hotplug) was refused.
    #[error("device arguments '{devargs}': {why}")]
    BadDevargs { devargs: String, why: String },

    #[error(
        "--socket-mem asks for memory on NUMA node {node}, but this machine has nodes {nodes:?}"
    )]
    NoSuchNumaNode { node: u32, nodes: Vec<u32> },

    #[error("{gib} GiB needs more than {max} memory segments: ask for less with -m")]
    TooManySegments { gib: u64, max: usize },

    #[error("-m {mib} MiB is more than the {max} pages whose addresses the config can record: ask for less with -m, or use larger hugepages")]
    TooManyPages { mib: u64, max: usize },

    #[error("--base-virtaddr {start:#x}: the range {start:#x}-{end:#x} is already in use ({holder}): pick another address")]
    BaseAddressTaken {
        start: u64,
        end: u64,
        holder: String,
    },

    #[error("memory file {path} is being reclaimed by another primary: retry")]
    FileBeingReclaimed { path: String },

    #[error("cannot map {path}: {source}{hint}")]
    MapFailed {
        path: String,
        #[source]
        source: io::Error,
        hint: &'static str,
    },

    #[error("hugepage path {0} is too long: mount hugetlbfs at a shorter path, or use a shorter --file-prefix")]
    PathTooLong(String),

    #[error("--iova-mode=pa: physical addresses cannot be read here (they need root and hugepages, not --no-huge): use --iova-mode=va, or run as root with hugepages")]
    NoPhysicalAddresses,

    #[error("{what}: alignment {align} is not a power of two")]
    BadAlignment { what: String, align: u64 },

    #[error("{0:#x} was not allocated from the shared heap: free only what Eal::malloc returned")]
    NotFromHeap(u64),

    #[error("virtqueue '{name}': {size} descriptors is not a power of two from 1 to 32768")]
    BadQueueSize { name: String, size: u16 },

    #[error(transparent)]
    Pci(#[from] crate::pci::PciError),

    #[error(transparent)]
    Vfio(#[from] crate::vfio::VfioError),

    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("no hugetlbfs mount found{detail}: mount one with `mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages` (scripts/setup does this), or run with --no-huge")]
    NoHugetlbfs { detail: String },

    #[error("requested {requested_mib} MiB of hugepage memory but only {free_mib} MiB ({free_pages} pages of {page_kib} KiB) are free for {dir}: reserve more with `echo {needed_pages} > /sys/kernel/mm/hugepages/hugepages-{page_kib}kB/nr_hugepages` (or scripts/setup), or ask for less with -m/--socket-mem")]
    NotEnoughHugepages {
        requested_mib: u64,
        free_mib: u64,
        free_pages: u64,
        page_kib: u64,
        needed_pages: u64,
        dir: String,
    },

    #[error("the virtual range {start:#x}-{end:#x} that the primary of group '{prefix}' uses is already taken in this process by: {holder}. Start the primary with a different --base-virtaddr (for example {suggest:#x}), or let this process re-execute itself without address-space randomisation (the default; it was not possible here: {reexec})")]
    AddressCollision {
        prefix: String,
        start: u64,
        end: u64,
        holder: String,
        suggest: u64,
        reexec: String,
    },

    #[error("a primary process (pid {pid}) of group '{prefix}' is already running: start this one with --proc-type=secondary (or auto), or give it another --file-prefix")]
    PrimaryExists { prefix: String, pid: i32 },

    #[error("no primary process is running for group '{prefix}' (runtime dir {dir}): start a primary first, with the same --file-prefix")]
    NoPrimary { prefix: String, dir: String },

    #[error("processes of a previous primary of group '{prefix}' are still running (pid {pid}): a secondary exits within a second of its primary's death, so this one is stopped or stuck: stop it (kill {pid}) and start again")]
    StaleGroupAlive { prefix: String, pid: i32 },

    #[error("the primary of group '{prefix}' did not finish initialising within {secs} s: is it stuck? (pid {pid})")]
    PrimaryNotReady { prefix: String, pid: i32, secs: u64 },

    #[error("the primary of group '{prefix}' runs layout version {theirs} but this binary has version {ours}: rebuild both from the same source")]
    VersionMismatch {
        prefix: String,
        theirs: String,
        ours: String,
    },

    #[error("lcore {lcore} is already used by {holder} of group '{prefix}': give this process other lcores with -l/--lcores")]
    LcoreBusy {
        lcore: u32,
        holder: String,
        prefix: String,
    },

    #[error("out of shared memory: cannot allocate {size} bytes (aligned to {align}) for '{name}'; {free} bytes free in total, largest free block {largest} bytes: give the primary more memory with -m")]
    NoMemory {
        name: String,
        size: u64,
        align: u64,
        free: u64,
        largest: u64,
    },

    #[error("no IOVA-contiguous block of {size} bytes for '{name}': the hugepages behind the group's memory are not physically contiguous (IOVA mode PA). Ask for at most one page ({page} bytes) per zone, use 1 GiB pages, or use VFIO with an IOMMU (IOVA = VA)")]
    NotContiguous { name: String, size: u64, page: u64 },

    #[error(
        "memzone '{0}' already exists: pick another name, or look it up instead of reserving it"
    )]
    MemzoneExists(String),

    #[error("no memzone named '{0}' in this group: was it created by the primary, and is this process in the same --file-prefix group?")]
    MemzoneNotFound(String),

    #[error("the memzone table is full ({0} entries): free memzones you no longer need")]
    MemzoneTableFull(usize),

    #[error("name '{name}' is not valid: {why}")]
    BadName { name: String, why: &'static str },

    #[error("{0}")]
    Ring(String),

    #[error("{0}")]
    Mempool(String),

    #[error("IPC: {0}")]
    Ipc(String),

    #[error("{0}")]
    Timer(String),

    #[error("{0}")]
    Lcore(String),

    /// `-h/--help` was given: the text to print; not a failure.
    #[error("{0}")]
    Help(String),

    #[error("the EAL is already initialised in this process")]
    AlreadyInitialised,

    #[error("the EAL is not initialised: call eal::init first")]
    NotInitialised,
}

impl Error {
    /// Wraps an `io::Error` with what was being done and on which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
