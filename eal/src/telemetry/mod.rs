//! DPDK's telemetry, version 2: a unix socket that `dpdk-telemetry.py`, DPDK's Prometheus
//! exporter, collectd and Telegraf read, served by every process of a group on a thread of
//! its own (never on a forwarding lcore).
//!
//! The socket is a `SOCK_SEQPACKET` socket at `<runtime>/dpdk/<prefix>/dpdk_telemetry.v2`,
//! where `<runtime>` is `$RUNTIME_DIRECTORY`, else `/var/run` as root, else
//! `$XDG_RUNTIME_DIR` or `/tmp`: DPDK's own place, so DPDK's tools find it with the group's
//! `--file-prefix`. The primary serves there; a secondary serves at the first free
//! `dpdk_telemetry.v2:N` (N from 1), which `dpdk-telemetry.py -f PREFIX -i N` reaches and
//! `dpdk-telemetry.py -l` lists. (DPDK's own secondaries serve none.)
//!
//! A client gets a hello (`{"version":..,"pid":..,"max_output_len":16384}`), then sends one
//! command per message, `/name` or `/name,parameters`, and gets one message back,
//! `{"/name":value}`, where the value is `null` for an unknown command or a bad parameter.
//! The layers register their commands with [`register`]: `eal` its own (`/eal/...`,
//! `/mempool/...`, `/ring/...`, `/rpmd/...`), `net` the ports' (`/ethdev/...`).

mod commands;
mod server;

pub use server::{socket_dir, Server};

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The longest reply a client reads, as DPDK's `MAX_OUTPUT_LEN` (the terminating NUL
/// included there): a reply is at most one byte less.
pub const MAX_OUTPUT_LEN: usize = 16384;
/// The longest command name, as DPDK's `MAX_CMD_LEN` (the NUL included).
const MAX_CMD_LEN: usize = 56;
/// The longest help text, as DPDK's `RTE_TEL_MAX_STRING_LEN` (the NUL included).
const MAX_HELP_LEN: usize = 128;

/// What a command computes from its parameters (everything after the first comma, if
/// anything does): a JSON value, or `None` for a bad or missing parameter (`null` on the
/// wire, as DPDK answers).
pub type Handler = Arc<dyn Fn(Option<&str>) -> Option<Value> + Send + Sync>;

struct Command {
    help: String,
    handler: Handler,
}

/// A command name or help text [`register`] refused.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The name breaks DPDK's rules.
    #[error("telemetry command '{0}': a name starts with '/', is shorter than 56 bytes and has only letters, digits, '_' and '/'")]
    BadName(String),
    /// The help text is too long.
    #[error("telemetry command '{0}': its help must be shorter than 128 bytes")]
    HelpTooLong(String),
}

fn commands() -> MutexGuard<'static, BTreeMap<String, Command>> {
    static COMMANDS: Mutex<BTreeMap<String, Command>> = Mutex::new(BTreeMap::new());
    COMMANDS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers command `name` (replacing one of the same name) with its help text. Commands
/// may be registered at any time; a client sees them from its next request.
pub fn register(
    name: &str,
    help: &str,
    handler: impl Fn(Option<&str>) -> Option<Value> + Send + Sync + 'static,
) -> Result<(), TelemetryError> {
    let valid = name.starts_with('/')
        && name.len() < MAX_CMD_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/');
    if !valid {
        return Err(TelemetryError::BadName(name.into()));
    }
    if help.len() >= MAX_HELP_LEN {
        return Err(TelemetryError::HelpTooLong(name.into()));
    }
    commands().insert(
        name.into(),
        Command {
            help: help.into(),
            handler: Arc::new(handler),
        },
    );
    Ok(())
}

/// Registers a command whose help and code are fixed: the layers' own.
fn register_builtin(
    name: &str,
    help: &str,
    handler: impl Fn(Option<&str>) -> Option<Value> + Send + Sync + 'static,
) {
    if let Err(e) = register(name, help, handler) {
        log::error!("{e}");
    }
}

/// The hello a client gets on connecting, and `/info`'s value.
fn info() -> Value {
    serde_json::json!({
        "version": concat!("rpmd ", env!("CARGO_PKG_VERSION")),
        "pid": std::process::id(),
        "max_output_len": MAX_OUTPUT_LEN,
    })
}

/// `/`, `/info` and `/help`, as DPDK's telemetry library registers them.
fn register_core() {
    register_builtin(
        "/",
        "Returns list of available commands, Takes no parameters",
        |_| Some(commands().keys().cloned().collect::<Vec<_>>().into()),
    );
    register_builtin(
        "/info",
        "Returns DPDK Telemetry information. Takes no parameters",
        |_| Some(info()),
    );
    register_builtin(
        "/help",
        "Returns help text for a command. Parameters: string command",
        |param| {
            let cmds = commands();
            match param {
                None => cmds.get("/help").map(|c| c.help.clone().into()),
                Some(name) => cmds
                    .get(name)
                    .map(|c| serde_json::json!({ name: c.help.clone() })),
            }
        },
    );
}

/// The reply to one request: `{"<command>":<value>}`, compact, shorter than
/// [`MAX_OUTPUT_LEN`].
pub fn reply(request: &str) -> String {
    // As DPDK: leading commas are skipped, the command ends at the next comma, and the
    // rest (further commas included) is the parameter string.
    let request = request.trim_start_matches(',');
    let (cmd, param) = match request.split_once(',') {
        Some((c, p)) => (c, Some(p).filter(|p| !p.is_empty())),
        None => (request, None),
    };
    let handler = if cmd.len() < MAX_CMD_LEN {
        commands().get(cmd).map(|c| c.handler.clone())
    } else {
        None
    };
    // The handler runs without the table locked: `/` and `/help` lock it themselves.
    let value = handler.and_then(|h| h(param)).unwrap_or(Value::Null);
    frame(cmd, value)
}

/// `{"<cmd>":<value>}` in at most [`MAX_OUTPUT_LEN`] - 1 bytes. A value too long loses its
/// last elements, as DPDK's drops what does not fit, and stays valid JSON.
fn frame(cmd: &str, mut value: Value) -> String {
    let cmd: String = cmd.chars().take(MAX_CMD_LEN - 1).collect();
    loop {
        let text = serde_json::json!({ cmd.as_str(): &value }).to_string();
        if text.len() < MAX_OUTPUT_LEN {
            return text;
        }
        let shrunk = match &mut value {
            Value::Array(a) => a.pop().is_some(),
            Value::Object(o) => {
                let last = o.keys().next_back().cloned();
                last.is_some_and(|k| o.remove(&k).is_some())
            }
            _ => false,
        };
        if !shrunk {
            value = Value::Null;
        }
    }
}

/// Parses a port, queue or lcore number as DPDK's handlers do: a digit first, then C's
/// `strtoul(.., 0)` (`0x` hexadecimal, a leading `0` octal); text after the number is
/// ignored. `None` for anything else.
pub fn parse_id(param: Option<&str>) -> Option<u64> {
    let p = param?;
    if !p.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (digits, radix) = if let Some(hex) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
        (hex, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        // "0x" with no hex digit after it, or a lone "0" before text: strtoul reads 0.
        return Some(0);
    }
    u64::from_str_radix(&digits[..end], radix).ok()
}

/// Registers `/`, `/info`, `/help` and the EAL's commands (once per process).
pub(crate) fn register_eal_commands() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        register_core();
        commands::register();
    });
}

#[cfg(test)]
mod tests;
