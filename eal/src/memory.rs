//! Hugepage (or `/dev/shm`) memory: discovering hugetlbfs mounts, creating the group's
//! `<prefix>map_<n>` files, mapping them into one reserved virtual range, and mapping the
//! same files at the same addresses in secondaries.
//!
//! Every process that maps a file holds a POSIX read lock on it for its whole life, so a
//! new primary can tell files of a crashed group (no lock: reclaimed) from files still in
//! use (refused, naming the process). It holds a shared BSD lock (`flock`) too, as DPDK's
//! processes do on theirs: a DPDK primary starting on the same host deletes the `*map_*`
//! files it can lock exclusively, and must leave ours alone.

use crate::config::{IovaMode, Segment, SharedConfig, MAX_PAGES, MAX_SEGMENTS};
use crate::options::{EalOptions, IovaModeArg, MemoryRequest, DEFAULT_BASE_VIRTADDR};
use crate::sys::{self, LockKind};
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
/// Largest file one segment maps; few large files keep vhost-user's region count low.
const MAX_SEGMENT_LEN: u64 = 1 << 30;
/// Page size used to lay out `--no-huge` memory (files in /dev/shm use 4 KiB pages).
const NO_HUGE_PAGE: u64 = 2 * MIB;

/// A hugetlbfs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugeMount {
    /// Where it is mounted.
    pub dir: PathBuf,
    /// Its page size in bytes.
    pub page_size: u64,
}

fn default_huge_page_size() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("Hugepagesize:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(2 * MIB, |kib| kib * 1024)
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1 << 10),
        'm' | 'M' => (&s[..s.len() - 1], MIB),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// hugetlbfs mounts listed in a `/proc/mounts` text.
pub fn parse_mounts(mounts: &str, default_page: u64) -> Vec<HugeMount> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[2] != "hugetlbfs" {
                return None;
            }
            let page_size = f[3]
                .split(',')
                .find_map(|o| o.strip_prefix("pagesize=").and_then(parse_size))
                .unwrap_or(default_page);
            Some(HugeMount {
                dir: PathBuf::from(f[1]),
                page_size,
            })
        })
        .collect()
}

/// Picks the hugetlbfs mount to use: `--huge-dir` if given (it must be a mount), else
/// the first mount with the default page size, else the first mount.
pub fn find_mount(huge_dir: Option<&Path>) -> Result<HugeMount> {
    let default_page = default_huge_page_size();
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map(|m| parse_mounts(&m, default_page))
        .unwrap_or_default();
    match huge_dir {
        Some(dir) => {
            let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            mounts
                .iter()
                .find(|m| m.dir == canon)
                .cloned()
                .ok_or_else(|| Error::NoHugetlbfs {
                    detail: format!(" at --huge-dir {}", dir.display()),
                })
        }
        None => mounts
            .iter()
            .find(|m| m.page_size == default_page)
            .or(mounts.first())
            .cloned()
            .ok_or(Error::NoHugetlbfs {
                detail: String::new(),
            }),
    }
}

/// Free hugepages of `page_size`, on `node` or on the whole machine.
fn free_hugepages(page_size: u64, node: Option<u32>) -> u64 {
    let kib = page_size / 1024;
    let base = match node {
        Some(n) => format!("/sys/devices/system/node/node{n}/hugepages/hugepages-{kib}kB"),
        None => format!("/sys/kernel/mm/hugepages/hugepages-{kib}kB"),
    };
    let free = sys::read_u64(&format!("{base}/free_hugepages")).unwrap_or(0);
    // Pages reserved by other mappings are counted free but cannot be had.
    let resv = sys::read_u64(&format!("{base}/resv_hugepages")).unwrap_or(0);
    free.saturating_sub(resv)
}

fn numa_nodes() -> Vec<u32> {
    let mut nodes: Vec<u32> = std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("node")?
                    .parse()
                    .ok()
            })
            .collect()
        })
        .unwrap_or_default();
    if nodes.is_empty() {
        nodes.push(0);
    }
    nodes.sort_unstable();
    nodes
}

/// Where the memory files of a group live and how they are named.
#[derive(Debug, Clone)]
pub struct Backing {
    /// Path less the segment number: `<dir>/<prefix>map_`.
    pub stem: String,
    /// Page size of the files.
    pub page_size: u64,
    /// Files in `/dev/shm` instead of hugetlbfs (`--no-huge`).
    pub no_huge: bool,
}

impl Backing {
    /// The backing the options ask for: a hugetlbfs mount with free pages, or `/dev/shm`.
    pub fn for_options(opts: &EalOptions) -> Result<Self> {
        if opts.no_huge {
            return Ok(Backing {
                stem: format!("/dev/shm/rpmd.{}map_", opts.file_prefix),
                page_size: NO_HUGE_PAGE,
                no_huge: true,
            });
        }
        let m = find_mount(opts.huge_dir.as_deref())?;
        Ok(Backing {
            stem: format!("{}/{}map_", m.dir.display(), opts.file_prefix),
            page_size: m.page_size,
            no_huge: false,
        })
    }

    fn file(&self, n: usize) -> String {
        format!("{}{n}", self.stem)
    }

    /// Files of this group that exist now, by number.
    fn existing_files(&self) -> Vec<PathBuf> {
        let stem = Path::new(&self.stem);
        let (Some(dir), Some(base)) = (stem.parent(), stem.file_name().and_then(|b| b.to_str()))
        else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let num = name.strip_prefix(base)?;
            (!num.is_empty() && num.bytes().all(|b| b.is_ascii_digit())).then(|| dir.join(&name))
        })
        .collect()
    }

    /// Deletes files left by a group whose processes are all gone; refuses to touch a
    /// file that a live process still maps.
    pub fn reclaim_stale(&self, prefix: &str) -> Result<usize> {
        let mut reclaimed = 0;
        for path in self.existing_files() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("cannot open old memory file", &path, e))?;
            let held = sys::lock_or_holder(&f, LockKind::Write, 0, 0)
                .map_err(|e| Error::io("cannot lock", &path, e))?;
            if let Err(pid) = held {
                return Err(Error::StaleGroupAlive {
                    prefix: prefix.into(),
                    pid,
                });
            }
            std::fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
            reclaimed += 1;
        }
        if reclaimed > 0 {
            log::info!(
                "reclaimed {reclaimed} memory file(s) of a previous run of group '{prefix}'"
            );
        }
        Ok(reclaimed)
    }

    /// Deletes this group's files if no process maps them any more (at primary exit).
    pub fn remove_unused(&self) {
        for path in self.existing_files() {
            let unused = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .ok()
                .and_then(|f| sys::try_lock(&f, LockKind::Write, 0, 0).ok())
                .unwrap_or(false);
            if unused {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The group's memory as mapped by this process. Holds the files (and so their locks).
#[derive(Debug)]
pub struct MemoryMap {
    /// Start of the group's range.
    pub base: u64,
    /// Its length in bytes.
    pub len: u64,
    files: Vec<File>,
}

impl MemoryMap {
    /// The open file of each segment, in segment order. Share them (vhost-user passes them
    /// to its backend) but never open the paths again: closing any descriptor of a file
    /// drops this process's `fcntl` lock on it, which tells other processes the memory is
    /// unused.
    pub fn segment_files(&self) -> &[File] {
        &self.files
    }
}

fn round_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Bytes wanted per NUMA node (`u32::MAX`: any node) for a request.
fn per_node(req: &MemoryRequest, page: u64) -> Result<Vec<(u32, u64)>> {
    match req {
        MemoryRequest::Total(m) => Ok(vec![(u32::MAX, round_up(m * MIB, page))]),
        MemoryRequest::PerSocket(v) => {
            let nodes = numa_nodes();
            v.iter()
                .enumerate()
                .filter(|(_, m)| **m > 0)
                .map(|(n, m)| {
                    let n = n as u32;
                    if nodes.contains(&n) {
                        Ok((n, round_up(m * MIB, page)))
                    } else {
                        Err(Error::NoSuchNumaNode {
                            node: n,
                            nodes: nodes.clone(),
                        })
                    }
                })
                .collect()
        }
    }
}

/// Splits each node's memory into segments of at most `MAX_SEGMENT_LEN`.
fn plan_segments(per_node: &[(u32, u64)], page: u64) -> Result<Vec<(u32, u64)>> {
    let mut segs = Vec::new();
    for &(node, mut len) in per_node {
        while len > 0 {
            let l = len.min(round_up(MAX_SEGMENT_LEN, page));
            segs.push((node, l));
            len -= l;
        }
    }
    if segs.len() > MAX_SEGMENTS {
        return Err(Error::TooManySegments {
            gib: per_node.iter().map(|n| n.1).sum::<u64>() >> 30,
            max: MAX_SEGMENTS,
        });
    }
    Ok(segs)
}

fn check_free(backing: &Backing, per_node: &[(u32, u64)]) -> Result<()> {
    if backing.no_huge {
        return Ok(());
    }
    let page = backing.page_size;
    for &(node, want) in per_node {
        let free = free_hugepages(page, (node != u32::MAX).then_some(node));
        if want / page > free {
            let total = sys::read_u64(&format!(
                "/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages",
                page / 1024
            ))
            .unwrap_or(0);
            return Err(Error::NotEnoughHugepages {
                requested_mib: want / MIB,
                free_mib: free * page / MIB,
                free_pages: free,
                page_kib: page / 1024,
                needed_pages: total + (want / page - free),
                dir: backing
                    .stem
                    .rsplit_once('/')
                    .map_or("", |s| s.0)
                    .to_string(),
            });
        }
    }
    Ok(())
}

/// Finds and reserves a free virtual range of `len` bytes, starting at `want`; only when
/// the address was not chosen by the user does it move on to later ranges.
fn reserve_range(want: Option<u64>, len: u64) -> Result<u64> {
    let step = round_up(len, 1 << 30);
    let candidates: Vec<u64> = match want {
        Some(a) => vec![a],
        None => (0..64).map(|i| DEFAULT_BASE_VIRTADDR + i * step).collect(),
    };
    for a in &candidates {
        match sys::reserve_fixed(*a, len) {
            Ok(()) => return Ok(*a),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => {
                return Err(Error::io(
                    "cannot reserve virtual memory at",
                    format!("{a:#x}"),
                    e,
                ))
            }
        }
    }
    let a = candidates[0];
    Err(Error::BaseAddressTaken {
        start: a,
        end: a + len,
        holder: sys::describe_mappings(a, a + len),
    })
}

fn open_segment_file(path: &str, create: bool) -> Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).mode(0o600);
    if create {
        o.create_new(true);
    }
    let f = o
        .open(path)
        .map_err(|e| Error::io("cannot open memory file", path, e))?;
    // Shared read lock for as long as we map it (see the module comment), and the BSD lock
    // a DPDK primary of another prefix respects.
    let lock = |l: std::io::Result<bool>| l.map_err(|e| Error::io("cannot lock", path, e));
    if !lock(sys::try_lock(&f, LockKind::Read, 0, 0))? || !lock(sys::try_flock_shared(&f))? {
        return Err(Error::FileBeingReclaimed {
            path: path.to_string(),
        });
    }
    Ok(f)
}

/// Creates and maps the group's memory as its primary, and records it in `cfg`.
pub fn map_primary(
    opts: &EalOptions,
    backing: &Backing,
    cfg: &mut SharedConfig,
) -> Result<MemoryMap> {
    let page = backing.page_size;
    let req = opts
        .memory
        .clone()
        .unwrap_or(MemoryRequest::Total(opts.memory_mib()));
    let nodes = per_node(&req, page)?;
    check_free(backing, &nodes)?;
    let segs = plan_segments(&nodes, page)?;
    let total: u64 = segs.iter().map(|s| s.1).sum();
    if !backing.no_huge && total / page > MAX_PAGES as u64 {
        return Err(Error::TooManyPages {
            mib: total / MIB,
            max: MAX_PAGES,
        });
    }
    let base = reserve_range(opts.base_virtaddr, total)?;
    let mut files = Vec::with_capacity(segs.len());
    let mut offset = 0;
    for (n, (node, len)) in segs.iter().enumerate() {
        let path = backing.file(n);
        let f = open_segment_file(&path, true)?;
        if backing.no_huge {
            // Allocate the tmpfs blocks now: running out later would be a SIGBUS.
            // SAFETY: posix_fallocate on an fd we own.
            let r = unsafe {
                libc::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, *len as libc::off_t)
            };
            if r != 0 {
                return Err(Error::io(
                    "cannot allocate",
                    &path,
                    std::io::Error::from_raw_os_error(r),
                ));
            }
        } else {
            f.set_len(*len)
                .map_err(|e| Error::io("cannot size", &path, e))?;
        }
        // SAFETY: base..base+total is the reservation made above, nothing refers into it,
        // and each segment maps a distinct part of it.
        unsafe { sys::map_file_over_reservation(base + offset, *len, &f, 0, false) }.map_err(
            |e| {
                let hint = if e.raw_os_error() == Some(libc::ENOMEM) {
                    " (not enough free hugepages: another process took them first?)"
                } else {
                    ""
                };
                Error::MapFailed {
                    path: path.to_string(),
                    source: e,
                    hint,
                }
            },
        )?;
        if *node != u32::MAX {
            sys::bind_to_node(base + offset, *len, *node)
                .map_err(|e| Error::io("cannot bind memory to NUMA node of", &path, e))?;
        }
        if !backing.no_huge {
            // Fault every hugepage in now (after the NUMA binding), not on first use.
            fault_in(base + offset, *len, page);
        }
        cfg.segments[n] = Segment {
            offset,
            len: *len,
            socket: if *node == u32::MAX { 0 } else { *node },
            _pad: 0,
        };
        crate::store_point!("config.segment");
        files.push(f);
        offset += len;
    }
    cfg.n_segments = segs.len() as u32;
    cfg.base_va = base;
    cfg.va_len = total;
    cfg.page_size = page;
    cfg.no_huge = backing.no_huge as u32;
    let stem = backing.stem.as_bytes();
    if stem.len() >= cfg.file_stem.len() {
        return Err(Error::PathTooLong(backing.stem.clone()));
    }
    cfg.file_stem[..stem.len()].copy_from_slice(stem);
    crate::store_point!("config.layout");
    record_iova(cfg, backing, opts)?;
    crate::store_point!("config.iova");
    log::info!(
        "mapped {} MiB in {} segment(s) of {} at {base:#x}, IOVA mode {:?}",
        total / MIB,
        segs.len(),
        if backing.no_huge {
            "/dev/shm".to_string()
        } else {
            format!("{} KiB pages", page / 1024)
        },
        cfg.iova_mode()
    );
    Ok(MemoryMap {
        base,
        len: total,
        files,
    })
}

/// Faults in every page of `addr..addr + len`, a mapping just made, readable and writable,
/// on as many threads as the process has CPUs: the kernel zeroes each hugepage as it is
/// faulted, which is most of a primary's start-up with much memory.
fn fault_in(addr: u64, len: u64, page: u64) {
    let pages = len / page;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let threads = cpus.clamp(1, pages.max(1));
    let share = pages.div_ceil(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for p in t * share..((t + 1) * share).min(pages) {
                    // SAFETY: the page lies inside the mapping (p < len / page), which is
                    // readable and writable and not yet used by anything else.
                    unsafe { std::ptr::write_volatile((addr + p * page) as *mut u8, 0) };
                }
            });
        }
    });
}

/// Records each page's physical address when the kernel shows them (root, hugepages).
/// IOVA = VA when asked, when an IOMMU is on (VFIO maps the memory that way), when a
/// virtio-user port will share the memory with a vhost-user backend (which sees virtual
/// addresses, as DPDK's virtio-user requires) or when physical addresses cannot be known;
/// IOVA = PA otherwise.
fn record_iova(cfg: &mut SharedConfig, backing: &Backing, opts: &EalOptions) -> Result<()> {
    record_physical(cfg, backing);
    let virtio_user = opts
        .vdevs
        .iter()
        .any(|v| v.name.starts_with("net_virtio_user"));
    match opts.iova_mode {
        Some(IovaModeArg::Pa) if cfg.iova_mode() != IovaMode::Pa => {
            return Err(Error::NoPhysicalAddresses)
        }
        Some(IovaModeArg::Pa) => {}
        Some(IovaModeArg::Va) => cfg.iova_mode = IovaMode::Va as u32,
        None if virtio_user || crate::pci::Sysfs::default().has_iommu() => {
            cfg.iova_mode = IovaMode::Va as u32
        }
        None => {}
    }
    Ok(())
}

fn record_physical(cfg: &mut SharedConfig, backing: &Backing) {
    cfg.iova_mode = IovaMode::Va as u32;
    cfg.n_pages = 0;
    if backing.no_huge {
        return;
    }
    let Ok(pagemap) = File::open("/proc/self/pagemap") else {
        return;
    };
    let n = cfg.va_len / cfg.page_size;
    for i in 0..n {
        match sys::virt_to_phys(&pagemap, cfg.base_va + i * cfg.page_size) {
            Some(pa) => cfg.iova[i as usize] = pa,
            None => return,
        }
    }
    cfg.n_pages = n;
    cfg.iova_mode = IovaMode::Pa as u32;
}

/// Maps the group's memory at the addresses the primary recorded.
pub fn map_secondary(cfg: &SharedConfig, prefix: &str) -> Result<MemoryMap> {
    let (base, len) = (cfg.base_va, cfg.va_len);
    if let Err(e) = sys::reserve_fixed(base, len) {
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Err(Error::AddressCollision {
                prefix: prefix.into(),
                start: base,
                end: base + len,
                holder: sys::describe_mappings(base, base + len),
                suggest: base + round_up(len, 1 << 30) * 4,
                reexec: String::new(),
            });
        }
        return Err(Error::io(
            "cannot reserve virtual memory at",
            format!("{base:#x}"),
            e,
        ));
    }
    let stem = cfg.file_stem();
    let mut files = Vec::new();
    for (n, seg) in cfg.segments().iter().enumerate() {
        let path = format!("{stem}{n}");
        let f = open_segment_file(&path, false)?;
        // SAFETY: the whole range was reserved just above and nothing refers into it.
        unsafe { sys::map_file_over_reservation(base + seg.offset, seg.len, &f, 0, true) }
            .map_err(|e| Error::io("cannot map", &path, e))?;
        files.push(f);
    }
    log::debug!(
        "attached {} MiB of group '{prefix}' at {base:#x}",
        len / MIB
    );
    Ok(MemoryMap { base, len, files })
}

/// A running group's memory seen from outside the group, as a device sees it through DMA:
/// for a device model (tests), which is no process of the group and claims nothing in it.
pub struct GroupMemory {
    _config: crate::runtime::ConfigFile,
    map: MemoryMap,
    iova_mode: IovaMode,
    page_size: u64,
    /// IOVA of each page (IOVA = PA) to its virtual address.
    pages: std::collections::HashMap<u64, u64>,
}

impl GroupMemory {
    /// Waits for group `prefix`'s primary as a secondary would, then maps the group's
    /// memory at the group's addresses.
    pub fn attach(prefix: &str) -> Result<GroupMemory> {
        let cf = crate::runtime::open(prefix, crate::options::ProcType::Secondary)?;
        let cfg = cf.config();
        let map = map_secondary(cfg, prefix)?;
        let pages = (0..cfg.n_pages)
            .map(|i| (cfg.iova[i as usize], cfg.base_va + i * cfg.page_size))
            .collect();
        Ok(GroupMemory {
            iova_mode: cfg.iova_mode(),
            page_size: cfg.page_size,
            _config: cf,
            map,
            pages,
        })
    }

    /// Size of the group's pages: no DMA buffer crosses one when IOVA = PA.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Where `len` bytes at `iova` are in this process, if the group's memory holds them
    /// (in one page when IOVA = PA, as a device's DMA to one buffer would be).
    pub fn iova_to_virt(&self, iova: u64, len: u64) -> Option<*mut u8> {
        let va = match self.iova_mode {
            IovaMode::Va => iova,
            IovaMode::Pa => {
                let off = iova % self.page_size;
                if off + len > self.page_size {
                    return None;
                }
                self.pages.get(&(iova - off))? + off
            }
        };
        let inside = va >= self.map.base && va + len <= self.map.base + self.map.len;
        inside.then_some(va as *mut u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_with_and_without_pagesize() {
        let m = "nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
                 proc /proc proc rw 0 0\n\
                 nodev /mnt/huge1g hugetlbfs rw,pagesize=1024M 0 0\n\
                 nodev /mnt/h hugetlbfs rw 0 0\n";
        let v = parse_mounts(m, 2 * MIB);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].page_size, 2 * MIB);
        assert_eq!(v[1].page_size, 1 << 30);
        assert_eq!(v[2].page_size, 2 * MIB);
    }

    #[test]
    fn segments_are_at_most_one_gib() {
        let nodes = per_node(&MemoryRequest::Total(2500), 2 * MIB).expect("nodes");
        let s = plan_segments(&nodes, 2 * MIB).expect("plan");
        assert_eq!(
            s.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![1 << 30, 1 << 30, 452 * MIB]
        );
        let far = per_node(&MemoryRequest::PerSocket(vec![0, 64]), 2 * MIB);
        assert!(far.is_err() || numa_nodes().contains(&1));
    }
}
