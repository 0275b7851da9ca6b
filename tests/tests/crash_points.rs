//! Every kill point of the operations that change shared memory: `crash_points` runs each
//! in a secondary killed right after its Nth store (`eal::store_point!`), for every N, and
//! checks after each death that every object is in exactly one place, that the next
//! process can use the structure, and that nothing waited more than a second
//! (ARCHITECTURE.md, "Testing the crash model"). The devices of its ports run beside it:
//! an 82599 model (`ixgbe_model`) whose generator fills the RX ring, and `vhost_liar`
//! telling no lies for virtio-user. Needs `--features eal/fault-points`.

use system_tests::{Group, Proc, FAULT_POINTS_BUILD, T};

const HARNESS: &str = env!("CARGO_BIN_EXE_crash_points");
const MODEL: &str = env!("CARGO_BIN_EXE_ixgbe_model");
const LIAR: &str = env!("CARGO_BIN_EXE_vhost_liar");
/// What the backend sends to virtio-user: more frames than the harness takes, at a rate
/// that keeps its RX ring from being empty for long.
const LIAR_FRAMES: &str = "100000000";
const LIAR_PPS: &str = "20000";

/// The devices of the harness's ports, and the files they leave.
struct Devices {
    model: Proc,
    liar: Proc,
    bar: String,
    sock: String,
}

impl Devices {
    fn start(g: &Group) -> Devices {
        let bar = format!("/dev/shm/{}_ixgbe0", g.prefix);
        let sock = std::env::temp_dir()
            .join(format!("rpmd-{}.sock", g.prefix))
            .display()
            .to_string();
        let port = format!("bar={bar},gen=64");
        let mut model = Proc::start(MODEL, &["--file-prefix", &g.prefix, "--port", &port]);
        model.expect("READY", T);
        let mut liar = Proc::start(LIAR, &[&sock, "none", LIAR_FRAMES, LIAR_PPS]);
        liar.expect("LISTENING", T);
        Devices {
            model,
            liar,
            bar,
            sock,
        }
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        self.model.kill();
        self.liar.kill();
        for f in [&self.bar, &format!("{}.irq", self.bar), &self.sock] {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn every_kill_point_of_every_operation_leaves_the_group_whole() {
    if !eal::fault::ENABLED {
        panic!("this test kills at store points: {FAULT_POINTS_BUILD}");
    }
    let g = Group::new("crashpts", HARNESS);
    let devices = Devices::start(&g);
    let ixgbe = format!("net_ixgbe_model0,bar={}", devices.bar);
    let virtio = format!("net_virtio_user0,path={}", devices.sock);
    let (status, out, err) = g.run(&[
        "-l",
        "0",
        "-m",
        "64",
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_null0",
        "--vdev",
        &ixgbe,
        "--vdev",
        &virtio,
        "--",
        "survivor",
    ]);
    drop(devices);
    println!("{out}");
    let total = out
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("no TOTAL line; stderr: {err}"));
    assert!(status.success(), "{total}; stderr: {err}");
    let explored = system_tests::count(total, "kill_points");
    assert!(explored > 100, "only {explored} kill points explored");
}
