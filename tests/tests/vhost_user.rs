//! net_virtio_user against DPDK's vhost-user backend (`net_vhost` in Debian's
//! dpdk-testpmd, installed by `scripts/setup --peer`): frames both ways, counted by DPDK,
//! a backend restart mid-traffic, server mode, a secondary on its own queue pair, and the
//! messages for bad input.

use std::time::Duration;
use system_tests::{dpdk_testpmd, prefix, remove_group_files, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");

/// One test at a time: each runs DPDK on CPU 0 and ours on CPU 1, with 512 MiB of
/// hugepages for DPDK.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// DPDK's testpmd serving a vhost-user port at `sock` (interactive, so the test can ask for
/// its port statistics), forwarding on lcore 1, both lcores on CPU 0.
fn dpdk_vhost(tag: &str, sock: &str, vdev_args: &str, queues: u16, mode: &str) -> Proc {
    let vdev = format!("net_vhost0,iface={sock},queues={queues}{vdev_args}");
    let q = queues.to_string();
    let mut p = dpdk_testpmd(&[
        "--lcores",
        "0@0,1@0",
        "-m",
        "512",
        "--no-pci",
        // Its hugepage files go when it exits, however it exits.
        "--huge-unlink",
        &format!("--file-prefix=dpdk_{tag}"),
        "--vdev",
        &vdev,
        "--",
        "-i",
        &format!("--forward-mode={mode}"),
        "--total-num-mbufs=8192",
        &format!("--rxq={q}"),
        &format!("--txq={q}"),
        "--auto-start",
        "--disable-link-check",
    ]);
    p.expect("Logical Core 1", T);
    p
}

/// DPDK's counters of its port 0: (RX packets, RX bytes, TX packets, TX bytes).
fn dpdk_stats(p: &mut Proc) -> (u64, u64, u64, u64) {
    p.send("show port stats 0");
    let nums = |l: &str| -> Vec<u64> {
        l.split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    let rx = nums(&p.expect("  RX-packets:", T));
    let tx = nums(&p.expect("  TX-packets:", T));
    (rx[0], rx[2], tx[0], tx[2])
}

fn quit(mut p: Proc) {
    p.send("quit");
    p.wait(T);
}

/// `key=N` of a line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in '{line}'"))
}

/// Our side: port_helper's `echo` on a net_virtio_user port with `vdev_args`.
fn echo(group: &str, vdev_args: &str, n: u32, pps: u32) -> Proc {
    let vdev = format!("net_virtio_user0,{vdev_args}");
    let (n, pps) = (n.to_string(), pps.to_string());
    echo_with(
        group,
        &["-l", "1", "-m", "128", "--vdev", &vdev],
        &[&n, &pps],
    )
}

/// port_helper `echo` with these EAL arguments (besides the group's) and `echo` arguments.
fn echo_with(group: &str, eal: &[&str], echo_args: &[&str]) -> Proc {
    let mut args = vec!["--file-prefix", group];
    args.extend_from_slice(eal);
    args.extend_from_slice(&["--", "echo", "0"]);
    args.extend_from_slice(echo_args);
    Proc::start(HELPER, &args)
}

fn sock(tag: &str) -> String {
    format!("/tmp/rpmd-{}.sock", prefix(tag))
}

/// The rings' kind, as `net_virtio_user` arguments and a tag for names.
#[derive(Clone, Copy)]
enum Rings {
    /// Split rings, used in order (DPDK's vhost offers IN_ORDER).
    Split,
    /// Split rings, in any order (`in_order=0`).
    SplitAnyOrder,
    /// Packed rings, used in order.
    Packed,
    /// Packed rings, in any order (`in_order=0`).
    PackedAnyOrder,
}

impl Rings {
    fn args(self) -> &'static str {
        match self {
            Rings::Split => "",
            Rings::SplitAnyOrder => ",in_order=0",
            Rings::Packed => ",packed_vq=1",
            Rings::PackedAnyOrder => ",packed_vq=1,in_order=0",
        }
    }

    fn tag(self, name: &str) -> String {
        match self {
            Rings::Split => name.to_string(),
            Rings::SplitAnyOrder => format!("{name}_sa"),
            Rings::Packed => format!("{name}_p"),
            Rings::PackedAnyOrder => format!("{name}_pa"),
        }
    }

    /// What the driver logs about the rings it runs on.
    fn logged(self) -> &'static str {
        match self {
            Rings::Split => "on split rings, in order\n",
            Rings::SplitAnyOrder => "on split rings\n",
            Rings::Packed => "on packed rings, in order\n",
            Rings::PackedAnyOrder => "on packed rings\n",
        }
    }
}

#[test]
fn frames_cross_dpdk_vhost_intact_and_counted() {
    frames_cross_intact_and_counted(Rings::Split);
}

#[test]
fn frames_cross_dpdk_vhost_on_split_rings_in_any_order() {
    frames_cross_intact_and_counted(Rings::SplitAnyOrder);
}

#[test]
fn frames_cross_dpdk_vhost_on_packed_rings() {
    frames_cross_intact_and_counted(Rings::Packed);
}

#[test]
fn frames_cross_dpdk_vhost_on_packed_rings_in_any_order() {
    frames_cross_intact_and_counted(Rings::PackedAnyOrder);
}

fn frames_cross_intact_and_counted(rings: Rings) {
    let _serial = serial();
    let tag = rings.tag("vu_echo");
    let s = sock(&tag);
    let mut dpdk = dpdk_vhost(&tag, &s, "", 1, "macswap");
    let group = prefix(&tag);
    // 10,000 frames of 60 to 1514 bytes, every third in two segments: DPDK swaps the MACs
    // and sends each back.
    let mut ours = echo(&group, &format!("path={s}{}", rings.args()), 10_000, 50_000);
    ours.expect_stderr(rings.logged(), T);
    assert_eq!(ours.expect("POOL before_start=", T), "POOL before_start=0");
    let line = ours.expect("ECHO ", Duration::from_secs(60));
    println!("{line}");
    let after = ours.expect("POOL after_stop=", T);
    assert!(ours.finish(T).success(), "{}", ours.stderr());
    let (rx, rx_bytes, tx, tx_bytes) = dpdk_stats(&mut dpdk);
    println!("DPDK net_vhost: RX {rx} packets {rx_bytes} bytes, TX {tx} packets {tx_bytes} bytes");
    assert_eq!(field(&line, "ok"), 10_000, "{line}");
    assert_eq!(field(&line, "bad") + field(&line, "dup"), 0, "{line}");
    assert_eq!((rx, tx), (10_000, 10_000));
    assert_eq!(rx_bytes, field(&line, "bytes"));
    assert_eq!(after, "POOL after_stop=0");
    quit(dpdk);
    remove_group_files(&group);
}

#[test]
fn frames_larger_than_one_buffer_arrive_whole() {
    larger_frames_arrive_whole(Rings::Split);
}

#[test]
fn frames_larger_than_one_buffer_arrive_whole_on_packed_rings() {
    larger_frames_arrive_whole(Rings::Packed);
}

fn larger_frames_arrive_whole(rings: Rings) {
    let _serial = serial();
    let tag = rings.tag("vu_merge");
    let s = sock(&tag);
    let dpdk = dpdk_vhost(&tag, &s, "", 1, "macswap");
    let group = prefix(&tag);
    // Buffers of 600 bytes: DPDK returns the larger frames in two or three of them (mergeable
    // RX buffers, the header's num_buffers), the smaller ones in one it does not fill. A
    // frame takes up to three of the ring's 256 buffers, and DPDK drops one it cannot place
    // whole: the rate leaves the ring room.
    let vdev = format!("net_virtio_user0,path={s}{}", rings.args());
    let mut ours = echo_with(
        &group,
        &["-l", "1", "-m", "128", "--vdev", &vdev],
        &["10000", "10000", "0", "1", "600"],
    );
    let line = ours.expect("ECHO ", Duration::from_secs(60));
    println!("{line}");
    let after = ours.expect("POOL after_stop=", T);
    assert!(ours.finish(T).success(), "{}", ours.stderr());
    assert_eq!(field(&line, "ok"), 10_000, "{line}");
    assert_eq!(field(&line, "bad") + field(&line, "dup"), 0, "{line}");
    assert_eq!(after, "POOL after_stop=0");
    quit(dpdk);
    remove_group_files(&group);
}

#[test]
fn a_backend_restart_takes_the_link_down_and_traffic_resumes() {
    backend_restart(Rings::Split);
}

#[test]
fn a_backend_restart_on_packed_rings_resumes_where_the_device_left() {
    backend_restart(Rings::Packed);
}

fn backend_restart(rings: Rings) {
    let _serial = serial();
    let tag = rings.tag("vu_restart");
    let s = sock(&tag);
    let mut dpdk = dpdk_vhost(&tag, &s, "", 1, "macswap");
    let group = prefix(&tag);
    // 40,000 frames over 10 s; the backend is killed after 3 s and back 2 s later.
    let mut ours = echo(&group, &format!("path={s}{}", rings.args()), 40_000, 4_000);
    ours.expect("LINK up=1", T);
    std::thread::sleep(Duration::from_secs(3));
    dpdk.kill();
    let down = ours.expect("LINK up=0", T);
    println!("backend killed: {down}");
    std::thread::sleep(Duration::from_secs(2));
    // A killed DPDK leaves its socket file behind, and refuses to start over it.
    let _ = std::fs::remove_file(&s);
    let dpdk = dpdk_vhost(&tag, &s, "", 1, "macswap");
    let up = ours.expect("LINK up=1", Duration::from_secs(30));
    println!("backend restarted: {up}");
    let line = ours.expect("ECHO ", Duration::from_secs(60));
    println!("{line}");
    let after = ours.expect("POOL after_stop=", T);
    assert!(ours.finish(T).success(), "{}", ours.stderr());
    // Frames kept coming back after the restart, none damaged; what sat in the rings while
    // the backend was away was sent then (a frame inside the killed backend may be lost).
    assert!(
        field(&line, "ok") > field(&up, "back_so_far"),
        "{up} / {line}"
    );
    assert!(field(&line, "ok") >= 39_000, "{line}");
    assert_eq!(field(&line, "bad"), 0, "{line}");
    assert_eq!(after, "POOL after_stop=0", "mbufs leaked");
    quit(dpdk);
    remove_group_files(&group);
}

#[test]
fn a_secondary_polls_its_own_queue_pair() {
    secondary_polls_its_pair(Rings::Split);
}

#[test]
fn a_secondary_polls_its_own_packed_queue_pair() {
    secondary_polls_its_pair(Rings::Packed);
}

fn secondary_polls_its_pair(rings: Rings) {
    let _serial = serial();
    let tag = rings.tag("vu_mp");
    let s = sock(&tag);
    // DPDK sends each frame back on the queue pair it came in on.
    let mut dpdk = dpdk_vhost(&tag, &s, "", 2, "macswap");
    let group = prefix(&tag);
    let vdev = format!("net_virtio_user0,path={s},queues=2{}", rings.args());
    // The primary sets up two queue pairs and echoes on pair 0; a secondary (its own lcore,
    // on the same CPU) echoes on pair 1 at the same time. Each checks that it gets back its
    // own frames only.
    let mut primary = echo_with(
        &group,
        &["-l", "1", "-m", "128", "--vdev", &vdev],
        &["8000", "4000", "0", "2"],
    );
    assert_eq!(
        primary.expect("POOL before_start=", T),
        "POOL before_start=0"
    );
    primary.expect("LINK up=1", T);
    let mut secondary = echo_with(
        &group,
        &["--lcores", "2@1", "--proc-type=secondary"],
        &["8000", "4000", "1"],
    );
    let theirs = secondary.expect("ECHO ", Duration::from_secs(60));
    assert!(secondary.finish(T).success(), "{}", secondary.stderr());
    let ours = primary.expect("ECHO ", Duration::from_secs(60));
    primary.expect("WAITING", T);
    primary.send("stop");
    let after = primary.expect("POOL after_stop=", T);
    assert!(primary.finish(T).success(), "{}", primary.stderr());
    println!("primary, queue pair 0: {ours}\nsecondary, queue pair 1: {theirs}");
    let (rx, _, tx, _) = dpdk_stats(&mut dpdk);
    println!("DPDK net_vhost: RX {rx} TX {tx}");
    for line in [&ours, &theirs] {
        assert_eq!(field(line, "ok"), 8_000, "{line}");
        assert_eq!(field(line, "bad") + field(line, "dup"), 0, "{line}");
    }
    assert_eq!((rx, tx), (16_000, 16_000));
    assert_eq!(after, "POOL after_stop=0", "mbufs leaked");
    quit(dpdk);
    remove_group_files(&group);
}

#[test]
fn server_mode_waits_for_a_backend_in_client_mode() {
    let _serial = serial();
    let s = sock("vu_server");
    let group = prefix("vu_server");
    let mut ours = echo(&group, &format!("path={s},server=1"), 2_000, 20_000);
    std::thread::sleep(Duration::from_secs(1));
    let dpdk = dpdk_vhost("vu_server", &s, ",client=1", 1, "io");
    let line = ours.expect("ECHO ", Duration::from_secs(60));
    println!("{line}");
    assert!(ours.finish(T).success(), "{}", ours.stderr());
    let mut dpdk = dpdk;
    let (rx, _, tx, _) = dpdk_stats(&mut dpdk);
    println!("DPDK net_vhost (client mode): RX {rx} TX {tx}");
    assert_eq!(field(&line, "ok"), 2_000, "{line}");
    assert!(
        !std::path::Path::new(&s).exists(),
        "server socket left behind"
    );
    quit(dpdk);
    remove_group_files(&group);
}

#[test]
fn bad_input_is_explained() {
    let _serial = serial();
    let group = prefix("vu_bad");
    let missing = sock("vu_bad_missing");
    let run = |args: &str| {
        let mut p = echo(&group, args, 1, 1);
        let st = p.finish(T);
        assert!(!st.success(), "{args}: accepted");
        let err = p.stderr();
        println!("{args}: {}", err.lines().last().unwrap_or(""));
        err
    };
    let err = run(&format!("path={missing}"));
    assert!(
        err.contains(&format!(
            "no vhost-user socket at {missing}: start the backend first"
        )),
        "{err}"
    );
    let err = run("queues=1");
    assert!(err.contains("path=SOCKET is required"), "{err}");
    let err = run(&format!("path={missing},colour=red"));
    assert!(
        err.contains(
            "unknown argument 'colour' (this driver takes: path, queues, server, mac, queue_size, packed_vq, in_order)"
        ),
        "{err}"
    );
    let err = run(&format!("path={missing},packed_vq=yes"));
    assert!(err.contains("packed_vq=yes: 0 or 1"), "{err}");
    // A backend that offers no VERSION_1 (a legacy one): DPDK's cannot be made to, so a
    // few lines of the protocol here play it.
    let s = sock("vu_bad_legacy");
    let listener = std::os::unix::net::UnixListener::bind(&s).expect("bind a test socket");
    let backend = std::thread::spawn(move || legacy_backend(listener));
    let err = run(&format!("path={s}"));
    assert!(
        err.contains(&format!(
            "the vhost-user backend at {s} offers features 0x10000000 without VERSION_1"
        )),
        "{err}"
    );
    backend.join().expect("the test backend");
    let _ = std::fs::remove_file(&s);
    // More memory segments (1 GiB each) than vhost-user has regions: refused before any
    // backend is asked. --no-huge: the machine has far fewer than 9 GiB of hugepages.
    let mut p = echo_with(
        &group,
        &[
            "-l",
            "1",
            "--no-huge",
            "-m",
            "9216",
            "--vdev",
            &format!("net_virtio_user0,path={s}"),
        ],
        &["1", "1"],
    );
    let st = p.finish(T);
    remove_group_files(&group);
    let err = p.stderr();
    println!("9 GiB: {}", err.lines().last().unwrap_or(""));
    assert!(!st.success());
    assert!(
        err.contains("the group's memory is in 9 segments, vhost-user allows 8 regions: ask for less memory with -m"),
        "{err}"
    );
}

/// Answers SET_OWNER and GET_FEATURES as a legacy vhost-user backend would (only
/// `VIRTIO_F_NOTIFY_ON_EMPTY`-era bits, no VERSION_1), then hangs up.
fn legacy_backend(l: std::os::unix::net::UnixListener) {
    use std::io::{Read, Write};
    let (mut c, _) = l.accept().expect("accept the frontend");
    let mut hdr = [0u8; 12];
    for _ in 0..2 {
        c.read_exact(&mut hdr).expect("a request header");
        let request = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        if request == 1 {
            // GET_FEATURES: header (request, version 1 | reply flag, 8 bytes) and the value.
            let mut reply = Vec::new();
            reply.extend_from_slice(&1u32.to_le_bytes());
            reply.extend_from_slice(&0x5u32.to_le_bytes());
            reply.extend_from_slice(&8u32.to_le_bytes());
            reply.extend_from_slice(&(1u64 << 28).to_le_bytes());
            c.write_all(&reply).expect("the reply");
        }
    }
}
