//! simple_mp, as DPDK's example: a primary and a secondary exchange text messages through
//! two rings and a message pool that they find by name.
//!
//! ```text
//! simple_mp -l 0-1 --proc-type=primary
//! simple_mp --lcores '2@0,3@1' --proc-type=secondary
//! ```
//! Commands on standard input: `send <text>`, `help`, `quit` (end of input also quits).
//! Worker lcores print each message they receive as `core N: Received '<text>'`.

use eal::mempool::Mempool;
use eal::ring::{Ring, RingFlags};
use eal::Role;
use std::io::{BufRead, IsTerminal, Write};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const PRI_2_SEC: &str = "PRI_2_SEC";
const SEC_2_PRI: &str = "SEC_2_PRI";
const MSG_POOL: &str = "MSG_POOL";
/// Bytes of one message, its terminating NUL included (DPDK's `STR_TOKEN_SIZE`).
const MSG_SIZE: usize = 64;
const POOL_SIZE: u32 = 1024;
const POOL_CACHE: u32 = 32;
const RING_SIZE: u32 = 64;

const HELP: &str = "Simple demo example of multi-process in RTE\n\n\
    This is a readline-like interface that can be used to\n\
    send commands to the simple app. Commands supported are:\n\n\
    - send [string]\n\
    - help\n\
    - quit\n";

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("simple_mp: error: {msg}");
    std::process::exit(1);
}

/// The text of a message buffer: bytes up to the first NUL.
fn read_msg(obj: usize) -> String {
    // SAFETY: obj is an object of MSG_POOL, MSG_SIZE bytes, owned by us until put back.
    let bytes = unsafe { std::slice::from_raw_parts(obj as *const u8, MSG_SIZE) };
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(MSG_SIZE);
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

fn write_msg(obj: NonNull<u8>, text: &str) {
    let n = text.len().min(MSG_SIZE - 1);
    // SAFETY: obj is an object of MSG_POOL, MSG_SIZE bytes, owned by us until enqueued.
    let buf = unsafe { std::slice::from_raw_parts_mut(obj.as_ptr(), MSG_SIZE) };
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    buf[n] = 0;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (eal, _app) = eal::init_or_exit(&args);
    if eal.lcores().workers().next().is_none() {
        die("simple_mp needs at least two lcores, one of them to receive: e.g. -l 0-1, or --lcores '2@0,3@1' for a secondary");
    }
    let (send_ring, recv_ring, pool) = match eal.role() {
        Role::Primary => (
            Ring::create(PRI_2_SEC, RING_SIZE, RingFlags::empty()),
            Ring::create(SEC_2_PRI, RING_SIZE, RingFlags::empty()),
            Mempool::create(MSG_POOL, POOL_SIZE, MSG_SIZE as u32, POOL_CACHE, |_, _| {}),
        ),
        Role::Secondary => (
            Ring::lookup(SEC_2_PRI),
            Ring::lookup(PRI_2_SEC),
            Mempool::lookup(MSG_POOL),
        ),
    };
    let (send_ring, recv_ring, pool) = match (send_ring, recv_ring, pool) {
        (Ok(s), Ok(r), Ok(p)) => (s, r, p),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => die(e),
    };

    let quit = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = eal
        .lcores()
        .workers()
        .map(|lcore| {
            let quit = quit.clone();
            eal.remote_launch(lcore, move || {
                println!("Starting core {lcore}");
                let mut objs = [0usize; 8];
                while !quit.load(Ordering::Relaxed) {
                    let n = recv_ring.dequeue_burst(&mut objs);
                    if n == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        continue;
                    }
                    for obj in &objs[..n] {
                        println!("core {lcore}: Received '{}'", read_msg(*obj));
                    }
                    let _ = std::io::stdout().flush();
                    pool.put_bulk(&objs[..n]);
                }
                0
            })
            .unwrap_or_else(|e| die(e))
        })
        .collect();

    let interactive = std::io::stdin().is_terminal();
    let prompt = || {
        if interactive {
            print!("simple_mp > ");
            let _ = std::io::stdout().flush();
        }
    };
    prompt();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match cmd {
            "" => {}
            "send" => match pool.get() {
                Some(obj) => {
                    write_msg(obj, rest.trim());
                    if !send_ring.enqueue_one(obj.as_ptr() as usize) {
                        println!("Failed to send message - message discarded");
                        pool.put(obj);
                    }
                }
                None => println!("Failed to get a message buffer: the pool is empty; is the other process receiving?"),
            },
            "help" => print!("{HELP}"),
            "quit" => break,
            other => println!("Bad command '{other}': try help"),
        }
        prompt();
    }
    quit.store(true, Ordering::Relaxed);
    for w in workers {
        w.wait();
    }
    eal.cleanup();
}
