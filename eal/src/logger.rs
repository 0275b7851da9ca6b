//! The one logger of a process: `LEVEL target: message` on stderr, filtered by `--log-level`.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Logger;

static LOGGER: Logger = Logger;
/// Set once the logger is installed, so a second `init` in one process only changes the level.
static INSTALLED: AtomicUsize = AtomicUsize::new(0);

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // The target is the module path; its first component names the layer (eal, net, ...).
        let target = record.target().split("::").next().unwrap_or("app");
        let line = format!(
            "{} {}: {}\n",
            record.level(),
            target.to_uppercase(),
            record.args()
        );
        // One write call per line, so lines of concurrent threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger (once per process) and sets the level.
pub fn init(level: LevelFilter) {
    if INSTALLED.swap(1, Ordering::AcqRel) == 0 {
        // Another logger may already be installed by the embedding program; then keep it.
        let _ = log::set_logger(&LOGGER);
    }
    log::set_max_level(level);
}

/// Parses a `--log-level` value: a DPDK number 1..8 or a name, optionally as
/// `<pattern>:<level>` (the pattern is accepted for compatibility and applies globally).
pub fn parse_level(value: &str) -> Result<LevelFilter, String> {
    let level = value.rsplit(':').next().unwrap_or(value).trim();
    let by_name = match level.to_ascii_lowercase().as_str() {
        "emergency" | "alert" | "critical" | "error" => Some(LevelFilter::Error),
        "warning" | "warn" => Some(LevelFilter::Warn),
        "notice" | "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        "off" => Some(LevelFilter::Off),
        _ => None,
    };
    if let Some(l) = by_name {
        return Ok(l);
    }
    // DPDK's numeric levels: 1 emergency .. 4 error, 5 warning, 6 notice, 7 info, 8 debug.
    match level.parse::<u8>() {
        Ok(1..=4) => Ok(LevelFilter::Error),
        Ok(5) => Ok(LevelFilter::Warn),
        Ok(6 | 7) => Ok(LevelFilter::Info),
        Ok(8) => Ok(LevelFilter::Debug),
        _ => Err(format!(
            "invalid --log-level '{value}': use a number 1-8 or one of error, warning, notice, info, debug"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_number_and_name() {
        assert_eq!(parse_level("8"), Ok(LevelFilter::Debug));
        assert_eq!(parse_level("lib.eal:debug"), Ok(LevelFilter::Debug));
        assert_eq!(parse_level("warning"), Ok(LevelFilter::Warn));
        assert_eq!(parse_level("5"), Ok(LevelFilter::Warn));
        assert!(parse_level("9").is_err());
        assert!(parse_level("loud").is_err());
    }
}
