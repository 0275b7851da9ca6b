//! The environment abstraction layer: what every process of a group sets up before it
//! touches a packet, in the spirit of DPDK's EAL.
//!
//! [`init`] parses the EAL options, decides whether this process is the group's primary or
//! a secondary, maps the group's hugepage memory at the same address in every process,
//! joins the IPC channel, claims the lcores, and pins the main thread. The objects built on
//! that memory ([`ring::Ring`], [`mempool::Mempool`], memzones) are found by name from any
//! process of the group.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod fault;
pub mod hash;
pub mod heap;
pub mod ipc;
mod launch;
pub mod lcore;
mod lcore_owners;
pub mod logger;
pub mod memory;
pub mod mempool;
pub mod memzone;
pub mod options;
pub mod owner;
pub mod pci;
pub mod ring;
pub mod runtime;
pub mod shm;
mod sync;
mod sys;
pub mod telemetry;
pub mod timer;
pub mod vfio;

pub use error::{Error, Result};
pub use launch::LcoreThread;
pub use lcore_owners::{before_emptying_dead_caches, GroupProcess};
use lcore_owners::{
    claim_lcores, free_dead_lcore, parse_lcore_list, release_lcore, ROLE_PRIMARY, ROLE_SECONDARY,
};
pub use memzone::{Memzone, MemzoneFlags};
pub use runtime::Role;
pub use sys::{
    describe_process, fd_holders, membarrier_global, own_pid, pid_alive, process_name,
    same_net_namespace,
};

use config::SharedConfig;
use ipc::{Ipc, Message};
use lcore::MAX_LCORE;
use options::{EalOptions, Parsed};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const LCORE_CLAIM: &str = "eal_lcore_claim";
/// How long a secondary waits for the primary to answer during start-up.
const IPC_TIMEOUT: Duration = Duration::from_secs(5);

/// The initialised EAL of this process.
pub struct Eal {
    options: EalOptions,
    runtime_dir: PathBuf,
    config: runtime::ConfigFile,
    memory: memory::MemoryMap,
    backing: Option<memory::Backing>,
    ipc: Arc<Ipc>,
    tsc_hz: u64,
    launched: Mutex<[bool; MAX_LCORE]>,
    on_primary_exit: Mutex<Option<Box<dyn Fn() + Send>>>,
    /// The command line `init` was given, program name first.
    command_line: Vec<String>,
    telemetry: Option<telemetry::Server>,
}

static EAL: OnceLock<Eal> = OnceLock::new();

/// The EAL of this process, once [`init`] has run.
pub fn eal() -> Result<&'static Eal> {
    EAL.get().ok_or(Error::NotInitialised)
}

/// Initialises the EAL from a full command line (program name first). Returns the EAL and
/// the application's arguments: the program name, then what followed `--`.
///
/// `-h/--help` returns [`Error::Help`] with the text to print.
pub fn init(args: &[String]) -> Result<(&'static Eal, Vec<String>)> {
    let (options, app_args) = match options::parse(args)? {
        Parsed::Help(text) => return Err(Error::Help(text)),
        Parsed::Run { options, app_args } => (*options, app_args),
    };
    crate::logger::init(options.log_level);
    if EAL.get().is_some() {
        return Err(Error::AlreadyInitialised);
    }
    let cf = runtime::open(&options.file_prefix, options.proc_type)?;
    // Before the memory: a socket another process serves stops this one early. Its thread
    // starts before the main thread is pinned, so it runs on no lcore.
    let telemetry = if options.telemetry {
        telemetry::register_eal_commands();
        Some(telemetry::Server::start(&options.file_prefix, cf.role)?)
    } else {
        None
    };
    let mut eal = match cf.role {
        Role::Primary => Eal::init_primary(options, cf)?,
        Role::Secondary => Eal::init_secondary(options, cf)?,
    };
    eal.command_line = args.to_vec();
    eal.telemetry = telemetry;
    let eal = EAL.get_or_init(|| eal);
    eal.start()?;
    Ok((eal, app_args))
}

/// [`init`] for programs: prints help (exit 0) or the error (exit 1) and exits.
pub fn init_or_exit(args: &[String]) -> (&'static Eal, Vec<String>) {
    match init(args) {
        Ok(v) => v,
        Err(Error::Help(text)) => {
            println!("{text}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("EAL: error: {e}");
            std::process::exit(1);
        }
    }
}

impl Eal {
    fn init_primary(options: EalOptions, mut cf: runtime::ConfigFile) -> Result<Eal> {
        let prefix = options.file_prefix.clone();
        let backing = memory::Backing::for_options(&options)?;
        backing.reclaim_stale(&prefix)?;
        let memory = memory::map_primary(&options, &backing, cf.config_mut())?;
        let tsc_hz = timer::calibrate_tsc(Duration::from_millis(20));
        let cfg = cf.config_mut();
        cfg.tsc_hz = tsc_hz;
        // SAFETY: the config is not published yet: this process is its only user.
        unsafe { (*cfg.heap.get()).init(memory.base, memory.len) };
        crate::store_point!("heap.init");
        let pid = own_pid();
        claim_lcores(
            cf.config(),
            &prefix,
            pid,
            ROLE_PRIMARY,
            &options.lcores.ids(),
        )?;
        let runtime_dir = runtime::runtime_dir(&prefix);
        let ipc = Ipc::listen(&runtime_dir)?;
        Ok(Eal {
            options,
            runtime_dir,
            config: cf,
            memory,
            backing: Some(backing),
            ipc,
            tsc_hz,
            launched: Mutex::new([false; MAX_LCORE]),
            on_primary_exit: Mutex::new(None),
            command_line: Vec::new(),
            telemetry: None,
        })
    }

    fn init_secondary(options: EalOptions, cf: runtime::ConfigFile) -> Result<Eal> {
        let prefix = options.file_prefix.clone();
        let memory = match memory::map_secondary(cf.config(), &prefix) {
            Err(Error::AddressCollision {
                prefix,
                start,
                end,
                holder,
                suggest,
                ..
            }) => {
                let reexec = if sys::aslr_disabled() {
                    "this process already runs without randomisation, and the range is still taken"
                        .to_string()
                } else {
                    reexec_without_aslr()
                };
                return Err(Error::AddressCollision {
                    prefix,
                    start,
                    end,
                    holder,
                    suggest,
                    reexec,
                });
            }
            other => other?,
        };
        let runtime_dir = runtime::runtime_dir(&prefix);
        let ipc = Ipc::connect(&runtime_dir)?;
        let tsc_hz = cf.config().tsc_hz;
        let ids: Vec<String> = options.lcores.ids().iter().map(u32::to_string).collect();
        let reply = ipc.request(None, Message::new(LCORE_CLAIM, ids.join(",")), IPC_TIMEOUT)?;
        if let Some(err) = reply.text().strip_prefix("err:") {
            return Err(Error::Lcore(err.to_string()));
        }
        Ok(Eal {
            options,
            runtime_dir,
            config: cf,
            memory,
            backing: None,
            ipc,
            tsc_hz,
            launched: Mutex::new([false; MAX_LCORE]),
            on_primary_exit: Mutex::new(None),
            command_line: Vec::new(),
            telemetry: None,
        })
    }

    /// What runs once the EAL is reachable through [`eal()`]: IPC handlers, publishing.
    fn start(&'static self) -> Result<()> {
        let prefix = self.file_prefix().to_string();
        match self.role() {
            Role::Primary => {
                let p = prefix.clone();
                self.ipc.register(LCORE_CLAIM, move |pid, msg| {
                    let reply = match parse_lcore_list(&msg.text()) {
                        Some(ids) => {
                            match claim_lcores(self.config(), &p, pid, ROLE_SECONDARY, &ids) {
                                Ok(()) => "ok".to_string(),
                                Err(e) => format!("err:{e}"),
                            }
                        }
                        None => format!("err:bad lcore list '{}'", msg.text()),
                    };
                    Message::new(LCORE_CLAIM, reply)
                });
                self.ipc.on_peer_exit(move |pid| self.secondary_gone(pid));
                self.config.publish();
                log::info!(
                    "primary of group '{prefix}' ready (pid {}, lcores {})",
                    std::process::id(),
                    self.options.lcores.describe()
                );
            }
            Role::Secondary => {
                let p = prefix.clone();
                self.ipc.on_peer_exit(move |pid| {
                    if let Some(cb) = self.on_primary_exit.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                        cb();
                        return;
                    }
                    eprintln!("EAL: the primary process (pid {pid}) of group '{p}' has exited: stopping this secondary");
                    if let Some(t) = &self.telemetry {
                        t.remove();
                    }
                    std::process::exit(1);
                });
                log::info!(
                    "secondary of group '{prefix}' attached (pid {}, lcores {})",
                    std::process::id(),
                    self.options.lcores.describe()
                );
            }
        }
        let main = self.options.lcores.main();
        lcore::bind_current_thread(main, self.options.lcores.cpus_of(main).unwrap_or(&[0]))?;
        self.launched.lock().unwrap_or_else(|p| p.into_inner())[main as usize] = true;
        Ok(())
    }

    /// In the primary: a secondary's connection ended; free what it held.
    fn secondary_gone(&self, pid: i32) {
        let cfg = self.config();
        let released: Vec<u32> = (0..MAX_LCORE as u32)
            .filter(|l| free_dead_lcore(cfg, *l, pid))
            .collect();
        log::info!("secondary process {pid} exited; released lcores {released:?}");
    }

    /// The EAL's part of the command line: the program name and what came before `--`.
    pub fn eal_params(&self) -> Vec<String> {
        self.command_line
            .iter()
            .take_while(|a| *a != "--")
            .cloned()
            .collect()
    }

    /// The application's part of the command line: what came after `--`.
    pub fn app_params(&self) -> Vec<String> {
        self.command_line
            .iter()
            .skip_while(|a| *a != "--")
            .skip(1)
            .cloned()
            .collect()
    }

    /// The live processes of the group, each with its lcores, by pid.
    pub fn processes(&self) -> Vec<GroupProcess> {
        lcore_owners::group_processes(self.config())
    }

    /// The EAL options this process was started with.
    pub fn options(&self) -> &EalOptions {
        &self.options
    }
    /// Whether this process is the group's primary or a secondary.
    pub fn role(&self) -> Role {
        self.config.role
    }
    /// The group's `--file-prefix`.
    pub fn file_prefix(&self) -> &str {
        &self.options.file_prefix
    }
    /// The group's runtime directory (config, IPC socket).
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }
    /// The group's shared config.
    pub fn config(&self) -> &SharedConfig {
        self.config.config()
    }
    /// This process's end of the group's IPC channel.
    pub fn ipc(&self) -> &Ipc {
        &self.ipc
    }
    /// TSC ticks per second, the same in every process of the group.
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }
    /// The group's memory range: start address and length.
    pub fn memory_range(&self) -> (u64, u64) {
        (self.memory.base, self.memory.len)
    }
    /// The open file behind each memory segment (see [`memory::MemoryMap::segment_files`]).
    pub fn segment_files(&self) -> &[std::fs::File] {
        self.memory.segment_files()
    }
    /// This process's lcores and their CPUs.
    pub fn lcores(&self) -> &lcore::LcoreLayout {
        &self.options.lcores
    }
    /// The lcore of the thread that called [`init`].
    pub fn main_lcore(&self) -> u32 {
        self.options.lcores.main()
    }
    /// The pid of the primary process of the group.
    pub fn primary_pid(&self) -> i32 {
        self.config().primary_pid.load(Ordering::Relaxed)
    }

    /// In a secondary, replaces the default reaction to the primary's death (a message,
    /// then exit status 1). Runs on the IPC thread.
    pub fn on_primary_exit(&self, f: impl Fn() + Send + 'static) {
        *self
            .on_primary_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }

    /// Reserves a named zone of `len` bytes aligned to `align`, zeroed, visible to every process
    /// of the group by name. Fails if the name exists.
    pub fn memzone_reserve(
        &self,
        name: &str,
        len: u64,
        align: u64,
        flags: MemzoneFlags,
    ) -> Result<Memzone> {
        memzone::reserve(self.config(), name, len, align, flags)
    }
    /// The zone `name` when it exists with at least `len` bytes, else reserved anew (an
    /// older, smaller one freed first): for the rings and buffers a driver sets up again
    /// at each configuration.
    pub fn memzone_reuse_or_reserve(
        &self,
        name: &str,
        len: u64,
        align: u64,
        flags: MemzoneFlags,
    ) -> Result<Memzone> {
        match self.memzone_lookup(name) {
            Ok(mz) if mz.len() >= len => Ok(mz),
            Ok(_) => {
                self.memzone_free(name)?;
                self.memzone_reserve(name, len, align, flags)
            }
            Err(_) => self.memzone_reserve(name, len, align, flags),
        }
    }
    /// The zone `name`, reserved by any process of the group.
    pub fn memzone_lookup(&self, name: &str) -> Result<Memzone> {
        memzone::lookup(self.config(), name)
    }
    /// Frees the zone `name`; no process may use it afterwards.
    pub fn memzone_free(&self, name: &str) -> Result<()> {
        memzone::free(self.config(), name)
    }
    /// Every zone of the group.
    pub fn memzone_list(&self) -> Vec<Memzone> {
        memzone::list(self.config())
    }
    /// Zeroed, unnamed shared memory (DPDK's `rte_zmalloc`).
    pub fn malloc(&self, size: u64, align: u64) -> Result<NonNull<u8>> {
        memzone::malloc(self.config(), size, align)
    }
    /// Frees what [`Eal::malloc`] returned.
    pub fn free(&self, ptr: NonNull<u8>) -> Result<()> {
        memzone::mfree(self.config(), ptr)
    }

    /// Releases what this process holds in the group. The primary also deletes the memory
    /// files no other process maps and its IPC socket. Call it last: the process must not
    /// use shared memory afterwards.
    pub fn cleanup(&self) {
        let pid = own_pid();
        let cfg = self.config();
        let mine: Vec<u32> = (0..MAX_LCORE as u32)
            .filter(|l| cfg.lcores[*l as usize].owner.load() == pid)
            .collect();
        mempool::flush_caches_of(&mine);
        for l in mine {
            release_lcore(cfg, l, pid);
        }
        if let Some(t) = &self.telemetry {
            t.remove();
        }
        if let Some(b) = &self.backing {
            let _ = std::fs::remove_file(self.ipc.socket_path());
            b.remove_unused();
            self.config.remove_if_unused();
        }
    }
}

/// Re-executes this program with address-space randomisation off, so that the shared range
/// is more likely free. Returns only on failure, with the reason.
fn reexec_without_aslr() -> String {
    use std::os::unix::process::CommandExt;
    if let Err(e) = sys::disable_aslr_for_exec() {
        return format!("could not turn randomisation off: {e}");
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    log::warn!("the shared memory range is taken in this process: re-executing without address-space randomisation");
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(&args[0])
        .args(&args[1..])
        .exec();
    format!("re-executing failed: {err}")
}
