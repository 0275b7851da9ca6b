//! Every kill point of the operations that change shared memory: `crash_points` runs each
//! in a secondary killed right after its Nth store (`eal::store_point!`), for every N, and
//! checks after each death that every object is in exactly one place, that the next
//! process can use the structure, and that nothing waited more than a second
//! (ARCHITECTURE.md, "Testing the crash model"). The devices of its ports run beside it:
//! an 82599 model (`ixgbe_model`) whose generator fills the RX ring, and four
//! `vhost_liar`s telling no lies for virtio-user: on split rings, on packed rings, and on
//! packed and split rings used in order (TX chains completed in batches). The hash table's
//! operations, which need no device, can also be explored alone (the second test, which
//! waits for the first: both measure how long repairs take). Needs
//! `--features rpmd-eal/fault-points`.

use std::time::Duration;
use system_tests::devices::{Liar, Model};
use system_tests::Group;

const HARNESS: &str = env!("CARGO_BIN_EXE_crash_points");
/// How long the whole exploration may take: about half a minute, longer than the
/// group's usual limit for a process.
const EXPLORATION: Duration = Duration::from_secs(120);
/// What the backend sends to virtio-user: more frames than the harness takes, at a rate
/// that keeps its RX ring from being empty for long.
const LIAR_FRAMES: u64 = 100_000_000;
const LIAR_PPS: u32 = 20_000;

/// One exploration at a time: each times repairs on a machine it shares.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_kill_point_of_every_operation_leaves_the_group_whole() {
    system_tests::require_fault_points("this test kills at store points");
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let g = Group::new("crashpts", HARNESS);
    let model = Model::generating(&g, 1, 64);
    let liar = Liar::start(&g, "none", LIAR_FRAMES, LIAR_PPS);
    let packed = Liar::start_packed(&g, LIAR_FRAMES, LIAR_PPS);
    let in_order = Liar::start_packed_in_order(&g, LIAR_FRAMES, LIAR_PPS);
    let split_in_order = Liar::start_split_in_order(&g, LIAR_FRAMES, LIAR_PPS);
    let mut args = vec![
        "-l",
        "0",
        "-m",
        "64",
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_null0",
    ];
    let vdevs = model.vdevs();
    args.extend(vdevs.iter().map(String::as_str));
    // 64 descriptors: with the frames a TX run starts with in flight, fewer are free than
    // a TX burst waits for before it takes sent buffers back, so every run's burst does.
    let virtio = format!("{},queue_size=64", liar.vdev(0));
    let virtio_packed = format!("{},queue_size=64", packed.vdev(1));
    let virtio_in_order = format!("{},queue_size=64", in_order.vdev(2));
    let virtio_split_in_order = format!("{},queue_size=64", split_in_order.vdev(3));
    args.extend([
        "--vdev",
        &virtio,
        "--vdev",
        &virtio_packed,
        "--vdev",
        &virtio_in_order,
        "--vdev",
        &virtio_split_in_order,
        "--",
        "survivor",
    ]);
    let err = explore(&g, &args, 100);
    drop((model, liar, packed, in_order, split_in_order));
    assert!(
        err.contains("net_virtio_user1: 1 queue pair(s) on packed rings"),
        "the second virtio-user port is not on packed rings: {err}"
    );
    assert!(
        err.contains("net_virtio_user2: 1 queue pair(s) on packed rings, in order"),
        "the third virtio-user port is not on packed rings used in order: {err}"
    );
    assert!(
        err.contains("net_virtio_user3: 1 queue pair(s) on split rings, in order"),
        "the fourth virtio-user port is not on split rings used in order: {err}"
    );
}

/// The hash table's family alone (`eal::hash`: adds with and without cuckoo moves and
/// extendable buckets, an update, a delete, a reset), which needs no device: the writer
/// killed at every store under lookups from the harness, which then writes next.
#[test]
fn every_kill_point_of_a_hash_table_operation_leaves_the_table_whole() {
    system_tests::require_fault_points("this test kills at store points");
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let g = Group::new("crashhash", HARNESS);
    explore(&g, &["-l", "0", "-m", "64", "--", "survivor", "hash."], 20);
}

/// Runs the harness with `args` to its end, prints its report, and checks that it passed
/// having explored more than `at_least` kill points; returns its stderr.
fn explore(g: &Group, args: &[&str], at_least: u64) -> String {
    let mut harness = g.start(args);
    let status = harness.finish(EXPLORATION);
    let (out, err) = (harness.stdout().join("\n"), harness.stderr());
    println!("{out}");
    let total = out
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("no TOTAL line; stderr: {err}"));
    assert!(status.success(), "{total}; stderr: {err}");
    let explored = system_tests::count(total, "kill_points");
    assert!(explored > at_least, "only {explored} kill points explored");
    err
}
