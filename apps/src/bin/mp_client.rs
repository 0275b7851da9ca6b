//! mp_client: a client of DPDK's client_server_mp example (a secondary). Client N takes
//! the frames mp_server put on its ring and sends each out of the port paired with the one
//! it came in on, on TX queue N.
//!
//! ```text
//! mp_client [EAL options] -- -n CLIENT_ID
//! ```
//! Give it its own lcore (e.g. `--lcores 2@0`) and the server's `--file-prefix`; it is a
//! secondary unless told otherwise (`--proc-type`). SIGINT or
//! SIGTERM stop it: it frees what its TX queues hold once sent; what is left on its ring,
//! and any frames a port would not take, go back to the pool through the server. Frames a
//! port does not take at once are offered again, never dropped.

use apps::client_server::{self as cs, ClientSlot, TxNote, DRAINING, HANDED_BACK};
use apps::{bump, die, install_stop_signals, stop_requested};
use clap::Parser;
use eal::Role;
use net::mbuf_ring::{MbufRing, MAX_BURST};
use net::{Mbuf, Port, TxQueue};
use std::sync::atomic::{compiler_fence, Ordering};
use std::time::{Duration, Instant};

const BURST: usize = 32;
const _: () = assert!(BURST <= MAX_BURST);

#[derive(Parser, Debug)]
#[command(
    name = "mp_client",
    about = "Send out the frames mp_server hands to this client"
)]
struct Args {
    /// This client's number, 0 to the server's -n minus 1
    #[arg(short = 'n')]
    client_id: u16,
}

/// Claims client `id`'s slot for this process; waits while the server empties the ring
/// of a predecessor (at most two seconds).
fn claim(slot: &ClientSlot, id: u16) -> Result<(), String> {
    let me = eal::own_pid();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match slot
            .pid
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Ok(()),
            Err(cur) if cur > 0 && eal::pid_alive(cur) => {
                return Err(format!(
                    "client {id} is already running as process {cur}: stop it or pick another -n"
                ))
            }
            Err(cur) if Instant::now() > deadline => {
                let why = if cur == DRAINING || cur == HANDED_BACK {
                    "the server is still emptying its ring".to_string()
                } else {
                    format!("it still names dead process {cur}, and the server has not cleared it: is mp_server running?")
                };
                return Err(format!("client {id}'s slot is not free: {why}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Sends every frame of the hand out of its port (`out`, by port index), noting each burst
/// in the slot first (see `apps::client_server`). What a port does not take now is offered
/// again. Returns false when told to stop with frames not sent (they stay in `out`).
fn send_hand(out: &mut [Vec<Mbuf>], txs: &mut [TxQueue], slot: &ClientSlot) -> bool {
    for ((pkts, q), note) in out.iter_mut().zip(txs).zip(&slot.notes) {
        let mut sent_before = 0;
        while !pkts.is_empty() {
            let n = TxNote {
                sent_before,
                mark: q.tx_mark(),
            };
            note.store(n.pack(), Ordering::Release);
            // Noted before the queue can take a frame, whatever the compiler would prefer.
            compiler_fence(Ordering::SeqCst);
            let sent = q.tx_burst(pkts);
            sent_before += sent as u32;
            bump(&slot.tx, sent as u64);
            if sent == 0 {
                if stop_requested() {
                    return false;
                }
                std::hint::spin_loop();
            }
        }
    }
    true
}

fn main() {
    install_stop_signals();
    let all = apps::secondary_by_default(std::env::args().collect());
    let (eal, app) = apps::init(&all);
    let args: Args = apps::parse_app_args(eal, &app);
    if eal.role() != Role::Secondary {
        die(eal, "mp_client is a secondary: start mp_server first and give the client the server's --file-prefix (and no --proc-type=primary)");
    }
    let info = cs::lookup_info()
        .unwrap_or_else(|e| die(eal, format!("no mp_server in this group ({e}): start mp_server first, with the same --file-prefix")));
    let id = args.client_id;
    if id >= info.num_clients {
        die(
            eal,
            format!(
                "client {id} does not exist: mp_server was started with -n {}, so give -n 0 to {}",
                info.num_clients,
                info.num_clients - 1
            ),
        );
    }
    let ring = MbufRing::lookup(&cs::client_ring_name(id)).unwrap_or_else(|e| die(eal, e));
    let slot = &info.clients[id as usize];
    claim(slot, id).unwrap_or_else(|e| die(eal, e));
    let mut txs: Vec<TxQueue> = Vec::new();
    for &p in &info.ports[..info.num_ports as usize] {
        let q = Port::by_id(p)
            .and_then(|port| port.tx_queue(id))
            .unwrap_or_else(|e| {
                slot.pid.store(0, Ordering::Release);
                die(eal, format!("port {p}, TX queue {id}: {e}"))
            });
        txs.push(q);
    }
    println!("Client {id} ready: ring {}", cs::client_ring_name(id));
    // The hand, per port (by index in the server's table).
    let mut out: Vec<Vec<Mbuf>> = txs.iter().map(|_| Vec::with_capacity(BURST)).collect();
    let mut settled = true;
    while !stop_requested() {
        // This process is the ring's only consumer (the slot names it).
        let k = ring.sc_dequeue_start(BURST, |m| out[info.tx_port_index(m.port())].push(m));
        if k == 0 {
            std::hint::spin_loop();
            continue;
        }
        settled = send_hand(&mut out, &mut txs, slot);
        if !settled {
            break;
        }
        ring.sc_dequeue_finish(k as u32);
        for note in &slot.notes[..txs.len()] {
            note.store(0, Ordering::Release);
        }
    }
    let me = eal::own_pid();
    if settled {
        // What the devices still hold of ours goes back to the pool before the queues do.
        for q in &mut txs {
            cs::free_sent(q, id);
        }
        drop(txs);
        let _ = slot
            .pid
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
    } else {
        // Still claimed in the ring and noted: the server settles them, and the queues.
        let left: usize = out.iter().map(Vec::len).sum();
        for m in out.iter_mut().flat_map(|v| v.drain(..)) {
            m.into_addr();
        }
        println!("Client {id}: {left} frames not sent, left to the server");
        drop(txs);
        let _ = slot
            .pid
            .compare_exchange(me, cs::HANDED_BACK, Ordering::AcqRel, Ordering::Relaxed);
    }
    println!(
        "Client {id} stopping: sent {}",
        slot.tx.load(Ordering::Relaxed)
    );
    eal.cleanup();
}
