//! The runtime directory of a group and the process-type decision.
//!
//! `<runtime dir>/config` is the shared config file. Byte 0 of it is write-locked by the
//! primary for its whole life; byte 1 is read-locked by every secondary for its whole
//! life, and write-locked by a starting primary until its config is fresh. So `auto`
//! becomes primary exactly when it can lock byte 0; a new primary can see that secondaries
//! of a dead primary are still running (byte 1 held) and refuse to clobber memory they
//! still use; and a secondary never joins a config that a new primary is about to reset.

use crate::config::{layout_hash, version_bytes, version_str, SharedConfig, MAGIC};
use crate::options::ProcType;
use crate::sys::{self, LockKind};
use crate::{Error, Result};
use memmap2::MmapMut;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The role a process has in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Owns the group's memory and devices.
    Primary,
    /// Maps the primary's memory and uses its devices.
    Secondary,
}

/// How long a secondary waits for a starting primary to finish its set-up.
const PRIMARY_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a starting primary waits for secondaries of a previous primary to exit: they
/// notice its death within a second.
const STALE_GROUP_WAIT: Duration = Duration::from_secs(2);

/// Where groups keep their runtime directories, as DPDK chooses it: `$RUNTIME_DIRECTORY`
/// (systemd's `RuntimeDirectory=`), else `/var/run` as root, else `$XDG_RUNTIME_DIR` or
/// `/tmp`.
pub fn runtime_base() -> PathBuf {
    if let Some(d) = std::env::var_os("RUNTIME_DIRECTORY") {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"))
    }
}

/// `<runtime base>/rpmd/<prefix>` ([`runtime_base`]): apart from DPDK's `dpdk/<prefix>`, so
/// that a DPDK group of the same prefix shares nothing with ours but the telemetry
/// directory (`eal::telemetry`).
pub fn runtime_dir(prefix: &str) -> PathBuf {
    runtime_base().join("rpmd").join(prefix)
}

/// The open config file, its lock, and its mapping.
pub struct ConfigFile {
    /// Where the config file is.
    pub path: PathBuf,
    /// The role this process took.
    pub role: Role,
    _file: File,
    map: MmapMut,
}

impl ConfigFile {
    /// The config as shared data, for the rest of the process's life.
    pub fn config(&self) -> &SharedConfig {
        // SAFETY: the mapping is at least size_of::<SharedConfig>() bytes (set at open), page
        // aligned, and SharedConfig is ShmSafe: every bit pattern the primary writes is valid.
        unsafe { &*(self.map.as_ptr() as *const SharedConfig) }
    }

    /// The config for the primary to fill in before it publishes the magic.
    pub fn config_mut(&mut self) -> &mut SharedConfig {
        // SAFETY: as in `config`; the primary is the only writer before the magic is set.
        unsafe { &mut *(self.map.as_mut_ptr() as *mut SharedConfig) }
    }

    /// Removes the config file and the runtime dir when no secondary holds them (at the
    /// primary's clean exit). A secondary still attached keeps them in place.
    pub fn remove_if_unused(&self) {
        if sys::try_lock(&self._file, LockKind::Write, 1, 1).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.path);
            if let Some(dir) = self.path.parent() {
                // Only if nothing else is left in it.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// Marks the config complete; secondaries may attach from now on.
    pub fn publish(&self) {
        self.config().magic.store(MAGIC, Ordering::Release);
        crate::store_point!("config.magic");
    }
}

/// Creates the runtime dir and the config file in it (or opens the one there). An exiting
/// primary removes its dir when no process uses it, which can happen between the two steps
/// here; a dir that vanished is then made again.
fn create_config(path: &Path) -> Result<File> {
    const ATTEMPTS: u32 = 10;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut attempt = 1;
    loop {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("cannot create the runtime dir", dir, e))?;
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < ATTEMPTS => {
                attempt += 1
            }
            Err(e) => return Err(Error::io("cannot open the shared config", path, e)),
        }
    }
}

fn map_config(file: &File, path: &PathBuf) -> Result<MmapMut> {
    // SAFETY: the file is the group's config; other processes of the group change it only
    // through atomics or under the shared locks, which is how SharedConfig is accessed.
    unsafe { MmapMut::map_mut(file) }
        .map_err(|e| Error::io("cannot map the shared config", path, e))
}

/// Decides this process's role and opens the config accordingly. Only a primary creates
/// the runtime dir: a secondary of a group with no primary leaves nothing behind, and
/// cannot remove a dir a primary starting at the same moment has just made.
pub fn open(prefix: &str, proc_type: ProcType) -> Result<ConfigFile> {
    let path = runtime_dir(prefix).join("config");
    match proc_type {
        ProcType::Primary => open_primary(prefix, path),
        ProcType::Secondary => open_secondary(prefix, path),
        ProcType::Auto => match open_primary(prefix, path.clone()) {
            Err(Error::PrimaryExists { .. }) => open_secondary(prefix, path),
            other => other,
        },
    }
}

fn open_primary(prefix: &str, path: PathBuf) -> Result<ConfigFile> {
    let file = create_config(&path)?;
    let lock_err = |e| Error::io("cannot lock", &path, e);
    let primary_exists = |pid| Error::PrimaryExists {
        prefix: prefix.into(),
        pid,
    };
    if let Some(pid) = sys::lock_holder(&file, LockKind::Write, 0, 1).map_err(lock_err)? {
        return Err(primary_exists(pid));
    }
    // Byte 1, write-locked until the config is fresh: no secondary can join the config of
    // a previous primary meanwhile, so one still holding byte 1 is of that primary's group.
    // Secondaries probing for a primary hold it for microseconds, and those of a dead
    // primary exit within a second: wait a little for both before calling the group alive.
    let wait = STALE_GROUP_WAIT;
    if let Err(pid) = sys::lock_within(&file, LockKind::Write, 1, 1, wait).map_err(lock_err)? {
        return Err(Error::StaleGroupAlive {
            prefix: prefix.into(),
            pid,
        });
    }
    if let Err(pid) = sys::lock_or_holder(&file, LockKind::Write, 0, 1).map_err(lock_err)? {
        return Err(primary_exists(pid));
    }
    // A fresh, zeroed config: whatever a previous primary left is gone.
    let size = std::mem::size_of::<SharedConfig>() as u64;
    file.set_len(0)
        .and_then(|_| file.set_len(size))
        .map_err(|e| Error::io("cannot size the shared config", &path, e))?;
    crate::store_point!("config.reset");
    let map = map_config(&file, &path)?;
    let mut cf = ConfigFile {
        path,
        role: Role::Primary,
        _file: file,
        map,
    };
    let cfg = cf.config_mut();
    cfg.layout_hash = layout_hash();
    cfg.version = version_bytes();
    cfg.primary_pid.store(sys::own_pid(), Ordering::Relaxed);
    crate::store_point!("config.header");
    // Secondaries may open the config now; they wait for its magic.
    sys::unlock(&cf._file, 1, 1).map_err(|e| Error::io("cannot unlock", &cf.path, e))?;
    Ok(cf)
}

fn open_secondary(prefix: &str, path: PathBuf) -> Result<ConfigFile> {
    let no_primary = || Error::NoPrimary {
        prefix: prefix.into(),
        dir: path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    };
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_primary()),
        Err(e) => return Err(Error::io("cannot open the shared config", &path, e)),
    };
    let lock_err = |e| Error::io("cannot lock", &path, e);
    // Byte 1 first, held for life: it tells a future primary that this group still has a
    // live process, and while we hold it no new primary can take the group over, so the
    // primary found at byte 0 next is the one whose config we read. A primary that is
    // starting holds byte 1 until its config is fresh: wait for it.
    // One bound for that wait and the wait for the magic below.
    let deadline = Instant::now() + PRIMARY_READY_TIMEOUT;
    let wait = PRIMARY_READY_TIMEOUT;
    if let Err(pid) = sys::lock_within(&file, LockKind::Read, 1, 1, wait).map_err(lock_err)? {
        return Err(Error::PrimaryNotReady {
            prefix: prefix.into(),
            pid,
            secs: wait.as_secs(),
        });
    }
    let Some(primary) = sys::lock_holder(&file, LockKind::Write, 0, 1).map_err(lock_err)? else {
        return Err(no_primary());
    };
    // The primary sizes the file, then fills it in and publishes the magic last.
    let size = std::mem::size_of::<SharedConfig>() as u64;
    let mut mapped: Option<MmapMut> = None;
    let map = loop {
        if mapped.is_none() && file.metadata().map(|m| m.len()).unwrap_or(0) >= size {
            mapped = Some(map_config(&file, &path)?);
        }
        match mapped {
            // SAFETY: as in ConfigFile::config: the mapping holds a whole SharedConfig.
            Some(m) if unsafe { &*(m.as_ptr() as *const SharedConfig) }.is_ready() => break m,
            other => mapped = other,
        }
        // A primary that gave up (its process may live on) no longer holds byte 0.
        if sys::lock_holder(&file, LockKind::Write, 0, 1).map_err(lock_err)? != Some(primary) {
            return Err(no_primary());
        }
        if Instant::now() > deadline {
            return Err(Error::PrimaryNotReady {
                prefix: prefix.into(),
                pid: primary,
                secs: PRIMARY_READY_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let cf = ConfigFile {
        path,
        role: Role::Secondary,
        _file: file,
        map,
    };
    let cfg = cf.config();
    if cfg.layout_hash != layout_hash() || cfg.version != version_bytes() {
        return Err(Error::VersionMismatch {
            prefix: prefix.into(),
            theirs: format!(
                "{} (layout {:#x})",
                version_str(&cfg.version),
                cfg.layout_hash
            ),
            ours: format!(
                "{} (layout {:#x})",
                version_str(&version_bytes()),
                layout_hash()
            ),
        });
    }
    Ok(cf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// Names the group `poll_as_secondary` polls; unset, that test does nothing.
    const POLL_PREFIX_ENV: &str = "RPMD_UNIT_POLL_PREFIX";

    /// Child processes that are killed however the test ends.
    struct Pollers(Vec<Child>);

    impl Drop for Pollers {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Secondaries polling for a primary that is starting (`dumpcap -D` in a loop while
    /// l2fwd starts, say) must not make its start fail. The pollers are other processes:
    /// the fcntl locks of one process never conflict with each other.
    #[test]
    fn a_primary_starts_while_secondaries_poll_for_it() {
        let prefix = format!("unit-runtime-{}", std::process::id());
        let exe = std::env::current_exe().expect("the test binary's path");
        let spawn = || {
            Command::new(&exe)
                .args(["--exact", "runtime::tests::poll_as_secondary"])
                .args(["--ignored", "--quiet"])
                .env(POLL_PREFIX_ENV, &prefix)
                .stdout(Stdio::null())
                .spawn()
                .expect("start a poller")
        };
        let pollers = Pollers(vec![spawn(), spawn()]);
        let start = || {
            open(&prefix, ProcType::Primary).map(|cf| {
                cf.publish();
                cf.remove_if_unused()
            })
        };
        let failed: Vec<String> = (0..1000)
            .filter_map(|_| start().err().map(|e| e.to_string()))
            .collect();
        drop(pollers);
        assert!(
            failed.is_empty(),
            "{} failed starts: {:?}",
            failed.len(),
            failed.first()
        );
        // With the pollers gone, the last primary's exit removes the dir.
        start().expect("a primary with nobody else around");
        assert!(!runtime_dir(&prefix).exists());
    }

    #[test]
    #[ignore = "a helper process of a_primary_starts_while_secondaries_poll_for_it"]
    fn poll_as_secondary() {
        let Ok(prefix) = std::env::var(POLL_PREFIX_ENV) else {
            return;
        };
        // Until killed; a bound in case the parent died without killing it.
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            // Fails (no primary) or attaches and detaches at once.
            let _ = open(&prefix, ProcType::Secondary);
        }
    }
}
