//! Thin wrappers over the syscalls the EAL needs. Every `unsafe` of the crate that
//! talks to the kernel lives here, each with its reason.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: we pass the size of the set we own; the kernel writes at most that much.
    let ret = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if ret != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads a bit of the set we own; i is below CPU_SETSIZE.
        .filter(|i| unsafe { libc::CPU_ISSET(*i, &set) })
        .collect()
}

/// Pins the calling thread to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus {
        // SAFETY: CPU_SET writes a bit of the set we own; the bit index is bounded by the set size
        // (lcore parsing keeps CPU numbers below 4096 and the kernel refuses unknown ones).
        unsafe { libc::CPU_SET(*c % libc::CPU_SETSIZE as usize, &mut set) };
    }
    // SAFETY: the set is initialised and we pass its exact size.
    check(unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) }).map(drop)
}

/// The calling thread's kernel id; lock owners are threads, not processes. Read from
/// the kernel once per thread: a lock taken per hash table write would otherwise pay a
/// system call each time.
pub fn gettid() -> i32 {
    thread_local! {
        static TID: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
    }
    TID.with(|tid| {
        if tid.get() == 0 {
            // SAFETY: gettid has no preconditions.
            tid.set(unsafe { libc::gettid() });
        }
        tid.get()
    })
}

/// `MEMBARRIER_CMD_GLOBAL` of linux/membarrier.h.
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// Returns once every running thread of every process has passed a full memory barrier
/// (membarrier(2)): a writer that stored a flag before calling this then sees any flag a
/// reader stored before reading the writer's, though the reader used no fence at all.
/// Slow (a scheduler grace period, milliseconds): for rare writers such as a port stop.
pub fn membarrier_global() -> io::Result<()> {
    // SAFETY: membarrier takes two integers and touches no memory of this process.
    let ret = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0) };
    check(ret as libc::c_int).map(drop)
}

/// This process's id, read once (the group's processes are started, never forked).
pub fn own_pid() -> i32 {
    static PID: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    // SAFETY: getpid has no preconditions.
    *PID.get_or_init(|| unsafe { libc::getpid() })
}

/// Whether a process or thread with this id exists and has not exited (signal 0 checks
/// without sending; a zombie, dead but not yet waited for by its parent, counts as dead).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the target exists and may be signalled.
    let ret = unsafe { libc::kill(pid, 0) };
    if ret != 0 {
        return io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    }
    !is_zombie(pid)
}

/// Whether `/proc/<pid>/stat` says the process has exited (state Z or X).
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z") | Some("X"))
}

/// Kinds of POSIX record locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

fn flock_struct(kind: Option<LockKind>, start: u64, len: u64) -> libc::flock {
    // SAFETY: flock is plain data; zeroed is valid before we fill the fields.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match kind {
        Some(LockKind::Read) => libc::F_RDLCK,
        Some(LockKind::Write) => libc::F_WRLCK,
        None => libc::F_UNLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    fl
}

/// Tries to take a POSIX record lock on bytes `start..start+len` without waiting.
/// Returns `Ok(false)` when another process holds a conflicting lock.
///
/// POSIX locks belong to the process and are dropped when it exits, however it exits,
/// which is what lets a new primary tell a dead group from a live one.
pub fn try_lock(file: &File, kind: LockKind, start: u64, len: u64) -> io::Result<bool> {
    let fl = flock_struct(Some(kind), start, len);
    // SAFETY: F_SETLK reads the flock struct we own; the fd is open for the duration.
    match check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes a shared BSD lock (`flock`, independent of the `fcntl` locks above) on `file`
/// without waiting; false when another process holds it exclusively. DPDK's processes hold
/// one on each hugepage file they map, and a DPDK primary starting deletes every
/// `*map_*` file of a hugetlbfs mount it can lock exclusively: this lock keeps our files
/// out of that.
pub fn try_flock_shared(file: &File) -> io::Result<bool> {
    // SAFETY: flock on an fd we own, open for the duration.
    match check(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Like [`try_lock`], but when another process holds a conflicting lock, returns its pid
/// (-1 if it went away meanwhile) as the error.
pub fn lock_or_holder(
    file: &File,
    kind: LockKind,
    start: u64,
    len: u64,
) -> io::Result<Result<(), i32>> {
    if try_lock(file, kind, start, len)? {
        return Ok(Ok(()));
    }
    Ok(Err(lock_holder(file, kind, start, len)?.unwrap_or(-1)))
}

/// Like [`lock_or_holder`], but retries for up to `wait` while another process holds a
/// conflicting lock; the error is the holder's pid at the end.
pub fn lock_within(
    file: &File,
    kind: LockKind,
    start: u64,
    len: u64,
    wait: Duration,
) -> io::Result<Result<(), i32>> {
    let deadline = Instant::now() + wait;
    loop {
        match lock_or_holder(file, kind, start, len)? {
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            done => return Ok(done),
        }
    }
}

/// Releases a lock taken with [`try_lock`].
pub fn unlock(file: &File, start: u64, len: u64) -> io::Result<()> {
    let fl = flock_struct(None, start, len);
    // SAFETY: as in try_lock.
    check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) }).map(drop)
}

/// The pid of a process holding a lock that conflicts with `kind` on the range, if any.
pub fn lock_holder(file: &File, kind: LockKind, start: u64, len: u64) -> io::Result<Option<i32>> {
    let mut fl = flock_struct(Some(kind), start, len);
    // SAFETY: F_GETLK writes into the flock struct we own.
    check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) })?;
    Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid))
}

/// Reserves `len` bytes of address space at exactly `addr` with no access and no memory
/// behind it. Fails with `EEXIST` when anything is mapped there already.
pub fn reserve_fixed(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so this cannot
    // clobber memory the process uses; the new mapping is inaccessible until we map over it.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if p as u64 != addr {
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat it as a hint.
        // SAFETY: p..p+len is the mapping we just made.
        unsafe { libc::munmap(p, len as usize) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(())
}

/// Maps `len` bytes of `file` at `offset` shared and read-write over part of a range
/// this process reserved with [`reserve_fixed`].
///
/// # Safety
/// `addr..addr+len` must lie inside a reservation owned by the caller, and nothing in the
/// process may hold references into it: the mapping replaces whatever was there.
pub unsafe fn map_file_over_reservation(
    addr: u64,
    len: u64,
    file: &File,
    offset: u64,
    populate: bool,
) -> io::Result<()> {
    let flags = libc::MAP_SHARED | libc::MAP_FIXED | if populate { libc::MAP_POPULATE } else { 0 };
    // SAFETY: the caller guarantees the range is its own reservation (see above); the fd is open.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            file.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds the pages of `addr..addr+len` to NUMA `node` before they are touched.
pub fn bind_to_node(addr: u64, len: u64, node: u32) -> io::Result<()> {
    const MPOL_BIND: libc::c_long = 2;
    let mask: [libc::c_ulong; 16] = {
        let mut m = [0; 16];
        m[(node / 64) as usize % 16] = 1 << (node % 64);
        m
    };
    // SAFETY: mbind reads `maxnode` bits of the mask we own; the range is mapped by us.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len,
            MPOL_BIND,
            mask.as_ptr(),
            (mask.len() * 64) as libc::c_ulong,
            0 as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Physical address of the page holding `vaddr`, from `/proc/self/pagemap`.
/// `None` when the kernel hides frame numbers (not root) or the page is not present.
pub fn virt_to_phys(pagemap: &File, vaddr: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    const PAGE: u64 = 4096;
    let mut entry = [0u8; 8];
    pagemap.read_exact_at(&mut entry, (vaddr / PAGE) * 8).ok()?;
    let e = u64::from_le_bytes(entry);
    let present = e & (1 << 63) != 0;
    let pfn = e & ((1 << 55) - 1);
    (present && pfn != 0).then_some(pfn * PAGE + vaddr % PAGE)
}

/// Whether address-space randomisation is off for this process.
pub fn aslr_disabled() -> bool {
    // SAFETY: personality(0xffffffff) only queries the current persona.
    let p = unsafe { libc::personality(0xffff_ffff) };
    p >= 0 && (p & libc::ADDR_NO_RANDOMIZE) != 0
}

/// Turns address-space randomisation off for the next `exec` of this process.
pub fn disable_aslr_for_exec() -> io::Result<()> {
    // SAFETY: as above, a query.
    let p = check(unsafe { libc::personality(0xffff_ffff) })?;
    // SAFETY: sets a persona flag of this process; takes effect at the next exec.
    check(unsafe { libc::personality((p | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong) }).map(drop)
}

/// Describes what occupies `start..end` in this process, from `/proc/self/maps`.
pub fn describe_mappings(start: u64, end: u64) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let found: Vec<String> = maps
        .lines()
        .filter_map(|line| {
            let range = line.split_whitespace().next()?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            (a < end && b > start).then(|| {
                let what = line.split_whitespace().nth(5).unwrap_or("[anonymous]");
                format!("{a:#x}-{b:#x} {what}")
            })
        })
        .collect();
    if found.is_empty() {
        "an unknown mapping".into()
    } else {
        found.join(", ")
    }
}

/// Reads a small sysfs or procfs number.
pub fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Time stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        monotonic_ns()
    }
}

/// CLOCK_MONOTONIC_RAW in nanoseconds.
pub fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The other processes with a file descriptor open on `target` (a path such as
/// `/dev/vfio/3`), and, if `fdinfo_line` is given, whose `/proc/PID/fdinfo` entry for it
/// has that line (a TAP queue's shows `iff:\tNAME`). Lowest pid first.
pub fn fd_holders(target: &str, fdinfo_line: Option<&str>) -> Vec<u32> {
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|p| p.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|f| {
                let on_target = std::fs::read_link(f.path()).is_ok_and(|l| l.as_os_str() == target);
                on_target
                    && fdinfo_line.is_none_or(|line| {
                        let info =
                            format!("/proc/{pid}/fdinfo/{}", f.file_name().to_string_lossy());
                        std::fs::read_to_string(info).is_ok_and(|t| t.lines().any(|l| l == line))
                    })
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The NUMA node of CPU `cpu` (0 where the machine does not say).
pub(crate) fn cpu_node(cpu: usize) -> u32 {
    std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}"))
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
        .unwrap_or(0)
}

/// A process's name as the kernel keeps it (`/proc/PID/comm`), empty when it is gone.
pub fn process_name(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| n.trim_end().to_string())
        .unwrap_or_default()
}

/// A process as a message names it: "process PID (NAME, --file-prefix=PREFIX)", so that a
/// user told a device is held learns which group holds it.
pub fn describe_process(pid: u32) -> String {
    let comm = process_name(pid as i32);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    format!("process {pid} ({comm}, {})", describe_prefix(&args))
}

/// The `--file-prefix` a command line uses, as words for a message.
fn describe_prefix(args: &[String]) -> String {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(p) = a.strip_prefix("--file-prefix=") {
            return format!("--file-prefix={p}");
        }
        if a == "--file-prefix" {
            if let Some(p) = it.next() {
                return format!("--file-prefix={p}");
            }
        }
    }
    "default --file-prefix".into()
}

/// Whether process `pid` is in this process's network namespace.
pub fn same_net_namespace(pid: u32) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    ns(&pid.to_string()).is_some_and(|theirs| Some(theirs) == ns("self"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_alive() {
        assert!(pid_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("run true");
        let pid = child.id() as i32;
        // Not waited for yet: once it exits, it stays a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            is_zombie(pid),
            "the child should be a zombie until waited for"
        );
        assert!(!pid_alive(pid));
        let _ = child.wait();
    }

    #[test]
    fn prefix_of_a_holder_command_line() {
        let v = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            describe_prefix(&v(&["l2fwd", "--file-prefix=a", "--"])),
            "--file-prefix=a"
        );
        assert_eq!(
            describe_prefix(&v(&["testpmd", "--file-prefix", "vh"])),
            "--file-prefix=vh"
        );
        assert_eq!(describe_prefix(&v(&["x"])), "default --file-prefix");
    }

    #[test]
    fn holders_of_an_open_file_are_found() {
        let path = std::env::temp_dir().join(format!("rpmd-holder-{}", std::process::id()));
        std::fs::write(&path, b"x").expect("temp file");
        let target = path.to_string_lossy().into_owned();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(File::open(&path).expect("open"))
            .spawn()
            .expect("run sleep");
        let holders = fd_holders(&target, None);
        let with_line = fd_holders(&target, Some("pos:\t0"));
        let without = fd_holders(&target, Some("no such line"));
        let described = describe_process(child.id());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&path);
        assert_eq!(holders, vec![child.id()]);
        assert_eq!(with_line, vec![child.id()]);
        assert!(without.is_empty());
        let want = format!("process {} (sleep, default --file-prefix)", child.id());
        assert_eq!(described, want);
    }
}
