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
    BadDevargs {
        /// The arguments as given.
        devargs: String,
        /// Why they were refused.
        why: String,
    },

    /// `--socket-mem` names a NUMA node the machine lacks.
    #[error(
        "--socket-mem asks for memory on NUMA node {node}, but this machine has nodes {nodes:?}"
    )]
    NoSuchNumaNode {
        /// The node asked for.
        node: u32,
        /// The nodes the machine has.
        nodes: Vec<u32>,
    },

    /// The memory asked for needs more segments than the config records.
    #[error("{gib} GiB needs more than {max} memory segments: ask for less with -m")]
    TooManySegments {
        /// GiB asked for.
        gib: u64,
        /// Most segments.
        max: usize,
    },

    /// The memory asked for has more pages than the config records.
    #[error("-m {mib} MiB is more than the {max} pages whose addresses the config can record: ask for less with -m, or use larger hugepages")]
    TooManyPages {
        /// MiB asked for.
        mib: u64,
        /// Most pages.
        max: usize,
    },

    /// The `--base-virtaddr` range is taken in this process.
    #[error("--base-virtaddr {start:#x}: the range {start:#x}-{end:#x} is already in use ({holder}): pick another address")]
    BaseAddressTaken {
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// What is mapped there.
        holder: String,
    },

    /// Another primary is reclaiming a memory file.
    #[error("memory file {path} is being reclaimed by another primary (of ours, or a DPDK primary starting on this host): retry")]
    FileBeingReclaimed {
        /// The memory file.
        path: String,
    },

    /// A memory file could not be mapped.
    #[error("cannot map {path}: {source}{hint}")]
    MapFailed {
        /// The memory file.
        path: String,
        #[source]
        /// Why.
        source: io::Error,
        /// What may have caused it, when known.
        hint: &'static str,
    },

    /// The memory files' path does not fit the config.
    #[error("hugepage path {0} is too long: mount hugetlbfs at a shorter path, or use a shorter --file-prefix")]
    PathTooLong(String),

    /// IOVA mode PA asked for where physical addresses cannot be read.
    #[error("--iova-mode=pa: physical addresses cannot be read here (they need root and hugepages, not --no-huge): use --iova-mode=va, or run as root with hugepages")]
    NoPhysicalAddresses,

    /// An alignment that is not a power of two.
    #[error("{what}: alignment {align} is not a power of two")]
    BadAlignment {
        /// What was being allocated.
        what: String,
        /// The alignment asked for.
        align: u64,
    },

    /// A free of memory the shared heap did not allocate.
    #[error("{0:#x} was not allocated from the shared heap: free only what Eal::malloc returned")]
    NotFromHeap(u64),

    /// A virtqueue size the spec does not allow.
    #[error("virtqueue '{name}': {size} descriptors is not a power of two from 1 to 32768")]
    BadQueueSize {
        /// The queue's memzone.
        name: String,
        /// The size asked for.
        size: u16,
    },

    /// A PCI operation failed.
    #[error(transparent)]
    Pci(#[from] crate::pci::PciError),

    /// A VFIO operation failed.
    #[error(transparent)]
    Vfio(#[from] crate::vfio::VfioError),

    /// A file or syscall failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        #[source]
        /// Why it failed.
        source: io::Error,
    },

    /// No hugetlbfs is mounted.
    #[error("no hugetlbfs mount found{detail}: mount one with `mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages` (scripts/setup does this), or run with --no-huge")]
    NoHugetlbfs {
        /// Where it looked, for the message.
        detail: String,
    },

    /// Too few free hugepages for the memory asked for.
    #[error("requested {requested_mib} MiB of hugepage memory but only {free_mib} MiB ({free_pages} pages of {page_kib} KiB) are free for {dir}: reserve more with `echo {needed_pages} > /sys/kernel/mm/hugepages/hugepages-{page_kib}kB/nr_hugepages` (or scripts/setup), or ask for less with -m/--socket-mem")]
    NotEnoughHugepages {
        /// MiB asked for.
        requested_mib: u64,
        /// MiB free.
        free_mib: u64,
        /// Pages free.
        free_pages: u64,
        /// Page size in KiB.
        page_kib: u64,
        /// Pages to reserve in all.
        needed_pages: u64,
        /// The hugetlbfs mount.
        dir: String,
    },

    /// A secondary cannot map the group's range at the primary's address.
    #[error("the virtual range {start:#x}-{end:#x} that the primary of group '{prefix}' uses is already taken in this process by: {holder}. Start the primary with a different --base-virtaddr (for example {suggest:#x}), or let this process re-execute itself without address-space randomisation (the default; it was not possible here: {reexec})")]
    AddressCollision {
        /// The group.
        prefix: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// What this process has mapped there.
        holder: String,
        /// A `--base-virtaddr` likely to be free.
        suggest: u64,
        /// Why re-executing without randomisation did not help.
        reexec: String,
    },

    /// A primary of the prefix runs already.
    #[error("a primary process (pid {pid}) of group '{prefix}' is already running: start this one with --proc-type=secondary (or auto), or give it another --file-prefix")]
    PrimaryExists {
        /// The group.
        prefix: String,
        /// The running primary.
        pid: i32,
    },

    /// A secondary found no primary of its prefix.
    #[error("no primary process is running for group '{prefix}' (runtime dir {dir}): start a primary first, with the same --file-prefix")]
    NoPrimary {
        /// The group.
        prefix: String,
        /// Its runtime directory.
        dir: String,
    },

    /// Processes of a dead primary's group still run.
    #[error("processes of a previous primary of group '{prefix}' are still running (pid {pid}): a secondary exits within a second of its primary's death, so this one is stopped or stuck: stop it (kill {pid}) and start again")]
    StaleGroupAlive {
        /// The group.
        prefix: String,
        /// A process of the old group still running.
        pid: i32,
    },

    /// The primary did not finish initialising in time.
    #[error("the primary of group '{prefix}' did not finish initialising within {secs} s: is it stuck? (pid {pid})")]
    PrimaryNotReady {
        /// The group.
        prefix: String,
        /// The primary.
        pid: i32,
        /// How long this process waited.
        secs: u64,
    },

    /// The primary runs another layout of the shared config.
    #[error("the primary of group '{prefix}' runs layout version {theirs} but this binary has version {ours}: rebuild both from the same source")]
    VersionMismatch {
        /// The group.
        prefix: String,
        /// The primary's version.
        theirs: String,
        /// This binary's.
        ours: String,
    },

    /// An lcore asked for is held by another process of the group.
    #[error("lcore {lcore} is already used by {holder} of group '{prefix}': give this process other lcores with -l/--lcores")]
    LcoreBusy {
        /// The lcore.
        lcore: u32,
        /// The process holding it.
        holder: String,
        /// The group.
        prefix: String,
    },

    /// The shared heap has no block that large.
    #[error("out of shared memory: cannot allocate {size} bytes (aligned to {align}) for '{name}'; {free} bytes free in total, largest free block {largest} bytes: give the primary more memory with -m")]
    NoMemory {
        /// What was being allocated.
        name: String,
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for.
        align: u64,
        /// Bytes free in all.
        free: u64,
        /// The largest free block.
        largest: u64,
    },

    /// No IOVA-contiguous block that large.
    #[error("no IOVA-contiguous block of {size} bytes for '{name}': the hugepages behind the group's memory are not physically contiguous (IOVA mode PA). Ask for at most one page ({page} bytes) per zone, use 1 GiB pages, or use VFIO with an IOMMU (IOVA = VA)")]
    NotContiguous {
        /// What was being allocated.
        name: String,
        /// Bytes asked for.
        size: u64,
        /// The page size.
        page: u64,
    },

    /// A memzone of that name exists.
    #[error(
        "memzone '{0}' already exists: pick another name, or look it up instead of reserving it"
    )]
    MemzoneExists(String),

    /// No memzone of that name.
    #[error("no memzone named '{0}' in this group: was it created by the primary, and is this process in the same --file-prefix group?")]
    MemzoneNotFound(String),

    /// The memzone table is full.
    #[error("the memzone table is full ({0} entries): free memzones you no longer need")]
    MemzoneTableFull(usize),

    /// A name that cannot be stored.
    #[error("name '{name}' is not valid: {why}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// A ring operation failed (the message says which).
    #[error("{0}")]
    Ring(String),

    /// A hash table operation failed.
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),

    /// A mempool operation failed (the message says which).
    #[error("{0}")]
    Mempool(String),

    /// The IPC channel failed.
    #[error("IPC: {0}")]
    Ipc(String),

    /// The telemetry socket could not be served.
    #[error("telemetry: {0}")]
    Telemetry(String),

    /// A timer could not be set up.
    #[error("{0}")]
    Timer(String),

    /// An lcore could not be used (the message says why).
    #[error("{0}")]
    Lcore(String),

    /// `-h/--help` was given: the text to print; not a failure.
    #[error("{0}")]
    Help(String),

    /// `init` ran already in this process.
    #[error("the EAL is already initialised in this process")]
    AlreadyInitialised,

    /// The EAL is not initialised.
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

/// EAL results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
